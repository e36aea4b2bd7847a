<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\task;

/**
 * Sends one kept event to the router. Only a 2xx answer removes the event; any other answer, or none,
 * keeps it and fails the task, so Moodle runs it again with its back-off (up to a day apart) and the task
 * shows as failed with the router's answer (Site administration > Server > Tasks > Ad hoc tasks), where it
 * can also be run again at once (admin/cli/adhoc_task.php --id=<task id> --force, or the plugin's
 * cli/resend.php). An answer refusing the body itself (400) is failed the same way: it is kept and shown,
 * never dropped, until an administrator has looked at it.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class send_event extends \core\task\adhoc_task {
    /**
     * A task that keeps trying for as long as the router may be away (where Moodle lets it say so).
     */
    public function __construct() {
        $this->set_component('local_eventrouter');
        if (method_exists($this, 'set_attempts_available')) {
            $this->set_attempts_available(\local_eventrouter\queue::ATTEMPTS);
        }
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
        global $DB;
        $data = $this->get_custom_data();
        if (isset($data->body)) {
            // A task queued by version 1.0 carries the event itself: keep it in the table first.
            $payload = json_decode($data->body, true);
            $id = $DB->get_field(\local_eventrouter\queue::TABLE, 'id', ['eventid' => $payload['eventid'] ?? '']);
            $data = (object) ['id' => $id ?: \local_eventrouter\queue::keep($data->route, $payload)];
        }
        $row = $DB->get_record(\local_eventrouter\queue::TABLE, ['id' => $data->id]);
        if (!$row) {
            mtrace('local_eventrouter: nothing to send (already sent, or erased)');
            return;
        }
        $answer = \local_eventrouter\queue::send($row);
        if (!$answer->sent) {
            $reason = $answer->refused ? 'routerrefused' : 'routerunavailable';
            throw new \moodle_exception($reason, 'local_eventrouter', '', $answer->summary);
        }
        mtrace("local_eventrouter: {$row->route} event sent ({$answer->summary})");
    }
}
