<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\task;

/**
 * Gives every event still waiting a task to send it, if its own is gone or stopped by Moodle.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class requeue_events extends \core\task\scheduled_task {
    /**
     * The task's name.
     *
     * @return string
     */
    public function get_name(): string {
        return get_string('taskrequeueevents', 'local_eventrouter');
    }

    /**
     * Queue the missing tasks.
     */
    public function execute() {
        $queued = \local_eventrouter\queue::requeue();
        mtrace("local_eventrouter: $queued waiting events given a new task");
    }
}
