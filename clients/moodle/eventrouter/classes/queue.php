<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter;

/**
 * The events waiting for the router, in the plugin's own table (local_eventrouter_queue).
 *
 * An event is written here in the request that caused it (in its transaction), and removed only once
 * the router has answered 2xx. Moodle's ad hoc task that sends it carries nothing but the row's id; if
 * that task is ever gone (Moodle stops a task after its last attempt, and deletes stopped tasks after
 * some weeks), the scheduled task requeue_events gives the row a new one. So no answer of the router,
 * and no length of outage, loses an event.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class queue {
    /** @var string The table. */
    const TABLE = 'local_eventrouter_queue';

    /** @var int How many attempts Moodle makes before stopping a task: with its back-off capped at a day, months. */
    const ATTEMPTS = 99;

    /**
     * Keep an event until the router has it, and queue the task that sends it.
     *
     * @param string $route enrollment or grade
     * @param array $payload the router's event shape
     * @return int the row's id
     */
    public static function add(string $route, array $payload): int {
        $id = self::keep($route, $payload);
        try {
            self::queue_task($id);
        } catch (\Throwable $e) {
            // The row is kept: requeue_events gives it a task within 15 minutes.
            debugging('local_eventrouter: the event is kept, its task will be queued later: ' . $e->getMessage(),
                DEBUG_NORMAL);
        }
        return $id;
    }

    /**
     * Keep an event in the table (without a task to send it).
     *
     * @param string $route enrollment or grade
     * @param array $payload the router's event shape
     * @return int the row's id
     */
    public static function keep(string $route, array $payload): int {
        global $DB;
        return $DB->insert_record(self::TABLE, (object) [
            'eventid' => $payload['eventid'],
            'route' => $route,
            'userid' => (int) ($payload['userid'] ?? 0),
            'relateduserid' => $payload['relateduserid'] ?? null,
            'courseid' => (int) ($payload['courseid'] ?? 0),
            'body' => json_encode($payload),
            'timecreated' => time(),
            'attempts' => 0,
        ]);
    }

    /**
     * A task that sends the event of row ``$id`` (nothing else in it: no personal data in the task queue).
     *
     * @param int $id
     */
    public static function queue_task(int $id): void {
        $task = new task\send_event();
        $task->set_custom_data(['id' => $id]);
        if (method_exists($task, 'set_attempts_available')) {
            $task->set_attempts_available(self::ATTEMPTS);
        }
        \core\task\manager::queue_adhoc_task($task, true);
    }

    /**
     * Send one waiting event now.
     *
     * @param \stdClass $row
     * @return \stdClass the sender's answer (sent, status, summary)
     */
    public static function send(\stdClass $row): \stdClass {
        global $DB;
        $answer = sender::send($row->route, $row->body);
        if ($answer->sent) {
            $DB->delete_records(self::TABLE, ['id' => $row->id]);
        } else {
            $DB->update_record(self::TABLE, (object) [
                'id' => $row->id,
                'attempts' => $row->attempts + 1,
                'timeattempted' => time(),
                'laststatus' => $answer->status,
                'lasterror' => \core_text::substr($answer->summary, 0, 1000),
            ]);
        }
        return $answer;
    }

    /**
     * Give every waiting event a live task: one whose task is gone, or stopped by Moodle after its last
     * attempt, gets a new one.
     *
     * @return int how many tasks were queued
     */
    public static function requeue(): int {
        global $DB;
        $tasks = [];
        $classname = '\\' . task\send_event::class;
        foreach ($DB->get_records('task_adhoc', ['classname' => $classname], '', 'id, customdata, attemptsavailable') as $t) {
            $data = json_decode((string) $t->customdata);
            if (isset($data->id)) {
                $tasks[(int) $data->id] = $t;
            }
        }
        $queued = 0;
        foreach ($DB->get_fieldset_select(self::TABLE, 'id', '1 = 1') as $id) {
            $task = $tasks[(int) $id] ?? null;
            if ($task !== null && !(isset($task->attemptsavailable) && (int) $task->attemptsavailable === 0)) {
                continue;
            }
            if ($task !== null) {
                $DB->delete_records('task_adhoc', ['id' => $task->id]);
            }
            self::queue_task((int) $id);
            $queued++;
        }
        return $queued;
    }

    /**
     * How many events wait, since when, and the last answers that refused them.
     *
     * @return \stdClass {waiting, oldest (a time or null), failing, refused: [{eventid, route, laststatus, lasterror}]}
     */
    public static function summary(): \stdClass {
        global $DB;
        $summary = new \stdClass();
        $summary->waiting = $DB->count_records(self::TABLE);
        $oldest = $DB->get_field_sql('SELECT MIN(timecreated) FROM {' . self::TABLE . '}');
        $summary->oldest = $oldest ? (int) $oldest : null;
        $summary->failing = $DB->count_records_select(self::TABLE, 'attempts > 0');
        $refused = $DB->get_records_select(self::TABLE, 'laststatus >= 400 AND laststatus < 500', null,
            'timeattempted DESC', 'id, eventid, route, laststatus, lasterror, timecreated', 0, 10);
        $summary->refused = array_values(array_map(fn($row) => (object) [
            'eventid' => $row->eventid,
            'route' => $row->route,
            'laststatus' => (int) $row->laststatus,
            'lasterror' => $row->lasterror,
            'timecreated' => (int) $row->timecreated,
        ], $refused));
        return $summary;
    }
}
