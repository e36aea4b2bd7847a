<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter;

/**
 * Turns Moodle events into the router's event shape and queues each as an ad hoc task, in the request
 * that caused it (so it is stored with the change, in the same transaction), to be sent by cron.
 * Nothing here calls the network or may fail a teacher's page.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class observer {
    /**
     * A user enrolment was created, updated (suspended, reactivated) or deleted.
     *
     * @param \core\event\base $event
     */
    public static function enrolment(\core\event\base $event): void {
        self::queue('enrollment', self::payload($event));
    }

    /**
     * A user was graded: the grade, and its letter or scale item when the grade item has one.
     *
     * @param \core\event\user_graded $event
     */
    public static function graded(\core\event\user_graded $event): void {
        $payload = self::payload($event);
        try {
            global $CFG;
            require_once($CFG->libdir . '/gradelib.php');
            $grade = $event->get_grade();
            $item = $grade->load_grade_item();
            if ($grade->finalgrade !== null) {
                if ((int) $item->gradetype === GRADE_TYPE_SCALE) {
                    $payload['other']['scaleid'] = (int) $item->scaleid;
                    $payload['other']['grade_letter'] = grade_format_gradevalue($grade->finalgrade, $item, true,
                        GRADE_DISPLAY_TYPE_REAL);
                } else {
                    $payload['other']['grade_letter'] = grade_format_gradevalue($grade->finalgrade, $item, true,
                        GRADE_DISPLAY_TYPE_LETTER);
                }
            }
        } catch (\Throwable $e) {
            debugging('local_eventrouter: grade details unavailable: ' . $e->getMessage(), DEBUG_DEVELOPER);
        }
        self::queue('grade', $payload);
    }

    /**
     * The router's Moodle event shape (docs/api.md of the router), with an id that stays the same on
     * every retry of the task, so the router sees a resend as a duplicate.
     *
     * @param \core\event\base $event
     * @return array
     */
    public static function payload(\core\event\base $event): array {
        $data = $event->get_data();
        return [
            'eventid' => \core\uuid::generate(),
            'eventname' => $data['eventname'],
            'userid' => (int) $data['userid'],
            'relateduserid' => $data['relateduserid'] === null ? null : (int) $data['relateduserid'],
            'courseid' => (int) $data['courseid'],
            'objectid' => $data['objectid'] === null ? null : (int) $data['objectid'],
            'timecreated' => (int) $data['timecreated'],
            'other' => is_array($data['other']) ? $data['other'] : [],
        ];
    }

    /**
     * Queue the event for the router, unless no router is configured.
     *
     * @param string $route enrollment or grade
     * @param array $payload
     */
    private static function queue(string $route, array $payload): void {
        if (!get_config('local_eventrouter', 'routerurl') && !get_config('local_eventrouter', $route . 'url')) {
            return;
        }
        try {
            $task = new task\send_event();
            $task->set_custom_data(['route' => $route, 'body' => json_encode($payload)]);
            \core\task\manager::queue_adhoc_task($task);
        } catch (\Throwable $e) {
            debugging('local_eventrouter: could not queue the event: ' . $e->getMessage(), DEBUG_NORMAL);
        }
    }
}
