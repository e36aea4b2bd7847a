<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\privacy;

use core_privacy\local\metadata\collection;
use core_privacy\local\request\approved_contextlist;
use core_privacy\local\request\approved_userlist;
use core_privacy\local\request\contextlist;
use core_privacy\local\request\userlist;
use core_privacy\local\request\writer;

/**
 * The plugin sends enrolment and grade events to an external location (the router), and keeps each in its
 * table (local_eventrouter_queue) only until the router has it. A waiting event is about the user enrolled
 * or graded (``relateduserid``) and names the user who made the change (``userid``), in a course.
 *
 * - export: the waiting events a user is the subject or the author of, in the system context;
 * - delete for a user: the events about them are deleted (never sent: the router erases what it holds
 *   itself); in the events they only made, they are replaced by 0 ("nobody"), so a student's grade given
 *   by an erased teacher still arrives.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class provider implements
    \core_privacy\local\metadata\provider,
    \core_privacy\local\request\core_userlist_provider,
    \core_privacy\local\request\plugin\provider {

    /**
     * What is kept, what is sent, and where.
     *
     * @param collection $collection
     * @return collection
     */
    public static function get_metadata(collection $collection): collection {
        $collection->add_database_table('local_eventrouter_queue', [
            'userid' => 'privacy:metadata:queue:userid',
            'relateduserid' => 'privacy:metadata:queue:relateduserid',
            'courseid' => 'privacy:metadata:queue:courseid',
            'body' => 'privacy:metadata:queue:body',
            'timecreated' => 'privacy:metadata:queue:timecreated',
            'lasterror' => 'privacy:metadata:queue:lasterror',
        ], 'privacy:metadata:queue');
        $collection->add_external_location_link('eventrouter', [
            'userid' => 'privacy:metadata:eventrouter:userid',
            'relateduserid' => 'privacy:metadata:eventrouter:relateduserid',
            'courseid' => 'privacy:metadata:eventrouter:courseid',
            'finalgrade' => 'privacy:metadata:eventrouter:finalgrade',
            'timecreated' => 'privacy:metadata:eventrouter:timecreated',
        ], 'privacy:metadata:eventrouter');
        return $collection;
    }

    /**
     * The system context, when an event waiting for the router is about the user or by them.
     *
     * @param int $userid
     * @return contextlist
     */
    public static function get_contexts_for_userid(int $userid): contextlist {
        global $DB;
        $contextlist = new contextlist();
        if ($DB->record_exists_select('local_eventrouter_queue', 'userid = ? OR relateduserid = ?', [$userid, $userid])) {
            $contextlist->add_system_context();
        }
        return $contextlist;
    }

    /**
     * The users waiting events are about or by.
     *
     * @param userlist $userlist
     */
    public static function get_users_in_context(userlist $userlist) {
        if (!$userlist->get_context() instanceof \context_system) {
            return;
        }
        $userlist->add_from_sql('userid', 'SELECT userid FROM {local_eventrouter_queue} WHERE userid > 0', []);
        $userlist->add_from_sql('relateduserid',
            'SELECT relateduserid FROM {local_eventrouter_queue} WHERE relateduserid IS NOT NULL', []);
    }

    /**
     * The waiting events about or by the user.
     *
     * @param approved_contextlist $contextlist
     */
    public static function export_user_data(approved_contextlist $contextlist) {
        global $DB;
        $userid = (int) $contextlist->get_user()->id;
        foreach ($contextlist->get_contexts() as $context) {
            if (!$context instanceof \context_system) {
                continue;
            }
            $rows = $DB->get_records_select('local_eventrouter_queue', 'userid = ? OR relateduserid = ?', [$userid, $userid],
                'timecreated, id', 'id, eventid, route, courseid, body, timecreated, lasterror');
            if ($rows) {
                writer::with_context($context)->export_data([get_string('pluginname', 'local_eventrouter')],
                    (object) ['waiting_events' => array_values($rows)]);
            }
        }
    }

    /**
     * Forget everything waiting (the whole system context).
     *
     * @param \context $context
     */
    public static function delete_data_for_all_users_in_context(\context $context) {
        global $DB;
        if ($context instanceof \context_system) {
            $DB->delete_records('local_eventrouter_queue');
        }
    }

    /**
     * Forget the users of ``$userlist``.
     *
     * @param approved_userlist $userlist
     */
    public static function delete_data_for_users(approved_userlist $userlist) {
        if ($userlist->get_context() instanceof \context_system) {
            foreach ($userlist->get_userids() as $userid) {
                self::forget((int) $userid);
            }
        }
    }

    /**
     * Forget the user of ``$contextlist``.
     *
     * @param approved_contextlist $contextlist
     */
    public static function delete_data_for_user(approved_contextlist $contextlist) {
        foreach ($contextlist->get_contexts() as $context) {
            if ($context instanceof \context_system) {
                self::forget((int) $contextlist->get_user()->id);
            }
        }
    }

    /**
     * Delete the events about ``$userid``; in the events they made, they become 0 ("nobody").
     *
     * @param int $userid
     */
    private static function forget(int $userid): void {
        global $DB;
        $DB->delete_records('local_eventrouter_queue', ['relateduserid' => $userid]);
        foreach ($DB->get_records('local_eventrouter_queue', ['userid' => $userid], '', 'id, body') as $row) {
            $body = json_decode($row->body, true);
            $body['userid'] = 0;
            $DB->update_record('local_eventrouter_queue', (object) ['id' => $row->id, 'userid' => 0,
                'body' => json_encode($body)]);
        }
    }
}
