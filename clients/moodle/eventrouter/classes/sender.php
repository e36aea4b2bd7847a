<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter;

/**
 * Posts one event body to its route, signed with HMAC-SHA256 of the moment it is sent and the exact
 * bytes sent (``X-Moodle-Timestamp``, ``X-Moodle-Signature`` = HMAC of "<timestamp>.<body>"), so the
 * router can refuse a captured request replayed later.
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
     * Whether events may go to ``$url``: https, or http to this machine (a router in development).
     *
     * @param string $url
     * @return bool
     */
    public static function safe(string $url): bool {
        $parts = parse_url($url);
        $scheme = strtolower($parts['scheme'] ?? '');
        $host = strtolower(trim($parts['host'] ?? '', '[]'));
        return $host !== '' && ($scheme === 'https' || ($scheme === 'http' && in_array($host, ['127.0.0.1', 'localhost', '::1'], true)));
    }

    /**
     * The headers that sign ``$body`` at ``$timestamp``.
     *
     * @param string $body
     * @param int $timestamp Unix seconds
     * @return array
     */
    public static function headers(string $body, int $timestamp): array {
        $secret = (string) get_config('local_eventrouter', 'secret');
        return [
            'Content-Type: application/json',
            'X-Moodle-Timestamp: ' . $timestamp,
            'X-Moodle-Signature: ' . hash_hmac('sha256', $timestamp . '.' . $body, $secret),
            'User-Agent: local_eventrouter',
        ];
    }

    /**
     * Send ``$body`` to ``$route``.
     *
     * @param string $route enrollment or grade
     * @param string $body the JSON to send, exactly as signed
     * @return \stdClass {sent: whether the router has it (2xx), status: HTTP status or 0 for none, refused: whether the
     *     router refused the body itself (400, 413, 422), summary: what the router said (its error code and
     *     message, never the secret)}
     */
    public static function send(string $route, string $body): \stdClass {
        global $CFG;
        require_once($CFG->libdir . '/filelib.php');
        $url = self::url($route);
        if (!self::safe($url)) {
            // Never sign a student's data onto the open network: the event waits until the URL is fixed.
            return (object) ['status' => 0, 'sent' => false, 'refused' => false,
                'summary' => 'the router URL must start with https:// (http:// only on this machine, for development)'];
        }
        $timeout = max(1, (int) get_config('local_eventrouter', 'timeout') ?: 10);
        $curl = new \curl();
        $curl->setHeader(self::headers($body, time()));
        $answer = $curl->post($url, $body, ['CURLOPT_TIMEOUT' => $timeout, 'CURLOPT_CONNECTTIMEOUT' => $timeout]);
        $info = $curl->get_info();
        $status = $curl->get_errno() !== 0 ? 0 : (int) ($info['http_code'] ?? 0);
        $result = new \stdClass();
        $result->status = $status;
        $result->sent = $status >= 200 && $status < 300;
        $result->refused = in_array($status, [400, 413, 422], true);
        $decoded = json_decode((string) $answer, true);
        $said = is_array($decoded) ? trim(($decoded['error'] ?? '') . ' ' . ($decoded['message'] ?? '')) : '';
        if (is_array($decoded) && !empty($decoded['details'])) {
            $said .= ' ' . json_encode($decoded['details']);
        }
        $result->summary = $status === 0 ? 'no answer (' . $curl->get_errno() . ' ' . $curl->error . ')' : "HTTP $status $said";
        return $result;
    }
}
