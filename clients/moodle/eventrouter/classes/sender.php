<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter;

/**
 * Posts one event body to its route, signed with HMAC-SHA256 of the exact bytes sent.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class sender {
    /** @var array The router's path of each route. */
    const PATHS = ['enrollment' => '/api/v1/events/moodle/enrollment', 'grade' => '/api/v1/events/moodle/grade'];

    /**
     * The URL events of a route go to.
     *
     * @param string $route
     * @return string
     */
    public static function url(string $route): string {
        $own = (string) get_config('local_eventrouter', $route . 'url');
        if ($own !== '') {
            return $own;
        }
        return rtrim((string) get_config('local_eventrouter', 'routerurl'), '/') . self::PATHS[$route];
    }

    /**
     * Send ``$body`` to ``$route``.
     *
     * @param string $route enrollment or grade
     * @param string $body the JSON to send, exactly as signed
     * @return \stdClass {status: HTTP status or 0 for none, retry: whether to send it again later, summary: what
     *     the router said (its error code and message, never the secret)}
     */
    public static function send(string $route, string $body): \stdClass {
        global $CFG;
        require_once($CFG->libdir . '/filelib.php');
        $secret = (string) get_config('local_eventrouter', 'secret');
        $timeout = max(1, (int) get_config('local_eventrouter', 'timeout') ?: 10);
        $curl = new \curl();
        $curl->setHeader([
            'Content-Type: application/json',
            'X-Moodle-Signature: ' . hash_hmac('sha256', $body, $secret),
            'User-Agent: local_eventrouter',
        ]);
        $answer = $curl->post(self::url($route), $body, ['CURLOPT_TIMEOUT' => $timeout, 'CURLOPT_CONNECTTIMEOUT' => $timeout]);
        $info = $curl->get_info();
        $status = (int) ($info['http_code'] ?? 0);
        $result = new \stdClass();
        $result->status = $status;
        $result->retry = $curl->get_errno() !== 0 || $status === 0 || $status === 429 || $status >= 500;
        $decoded = json_decode((string) $answer, true);
        $said = is_array($decoded) ? trim(($decoded['error'] ?? '') . ' ' . ($decoded['message'] ?? '')) : '';
        if (is_array($decoded) && !empty($decoded['details'])) {
            $said .= ' ' . json_encode($decoded['details']);
        }
        $result->summary = $status === 0 ? 'no answer (' . $curl->get_errno() . ')' : "HTTP $status $said";
        return $result;
    }
}
