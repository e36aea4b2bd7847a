<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\task;

/**
 * Sends one queued event to the router. An answer of 5xx or 429, or none, fails the task, and Moodle
 * runs it again later with its back-off (up to 24 hours apart, for about three months); a 4xx is
 * written to the task's log with the router's error and not retried; 2xx is done.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class send_event extends \core\task\adhoc_task {
    /** @var int Attempts before Moodle gives up: with its back-off capped at a day, about three months. */
    const ATTEMPTS = 99;

    /**
     * A task that keeps trying for as long as the router may be away.
     */
    public function __construct() {
        $this->set_component('local_eventrouter');
        $this->set_attempts_available(self::ATTEMPTS);
    }

    /**
     * The task's name in the task logs.
     *
     * @return string
     */
    public function get_name(): string {
        return get_string('tasksendevent', 'local_eventrouter');
    }

    /**
     * Send the event.
     */
    public function execute() {
        $data = $this->get_custom_data();
        $answer = \local_eventrouter\sender::send($data->route, $data->body);
        if ($answer->retry) {
            throw new \moodle_exception('routerunavailable', 'local_eventrouter', '', $answer->summary);
        }
        if ($answer->status >= 400) {
            mtrace(get_string('routerrefused', 'local_eventrouter', $answer->summary));
            return;
        }
        mtrace("local_eventrouter: {$data->route} event sent ({$answer->summary})");
    }
}
