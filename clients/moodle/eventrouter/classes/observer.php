<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter;

/**
 * Turns Moodle events into the router's event shape and keeps each in the plugin's queue table, in the
 * request that caused it (so it is stored with the change, in the same transaction), to be sent by cron.
 * Nothing here calls the network.
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
        self::keep('enrollment', self::payload($event));
    }

    /**
     * A user was graded, by a teacher or by Moodle itself (a course or category total: its actor is -1):
     * the grade, and its letter or scale item when the grade item has one.
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
            $payload['other']['itemtype'] = (string) $item->itemtype;
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
            // The grade itself is in the event: only its letter is missing.
            debugging('local_eventrouter: grade details unavailable: ' . $e->getMessage(), DEBUG_DEVELOPER);
        }
        self::keep('grade', $payload);
    }

    /**
     * The router's Moodle event shape (docs/api.md of the router), with an id that stays the same on
     * every attempt, so the router sees a resend as a duplicate. ``userid`` is the actor as Moodle gives
     * it: a user's id, or -1 (another user: Moodle computing a total) or 0 (nobody: cron, the command line).
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
     * Keep the event for the router, unless no router is configured.
     *
     * @param string $route enrollment or grade
     * @param array $payload
     */
    private static function keep(string $route, array $payload): void {
        if (!get_config('local_eventrouter', 'routerurl') && !get_config('local_eventrouter', $route . 'url')) {
            return;
        }
        queue::add($route, $payload);
    }
}
