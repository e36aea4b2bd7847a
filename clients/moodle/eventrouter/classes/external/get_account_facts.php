<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\external;

use core_external\external_api;
use core_external\external_function_parameters;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;

/**
 * What the router must know of an account before it may change it, and which Moodle's own web services do
 * not tell: whether it is a site administrator, and every role it holds in any context (system, category,
 * course, activity, user). The router changes only plain learner accounts (a student role or none).
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_account_facts extends external_api {
    /** @var int At most this many accounts a call. */
    const MAX = 100;

    /**
     * The parameters: user ids.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'userids' => new external_multiple_structure(new external_value(PARAM_INT, 'a user id')),
        ]);
    }

    /**
     * The facts of each existing (not deleted) account of ``$userids``.
     *
     * @param array $userids
     * @return array
     */
    public static function execute(array $userids): array {
        global $CFG, $DB;
        ['userids' => $userids] = self::validate_parameters(self::execute_parameters(), ['userids' => $userids]);
        if (count($userids) > self::MAX) {
            throw new \invalid_parameter_exception('at most ' . self::MAX . ' user ids a call');
        }
        $context = \context_system::instance();
        self::validate_context($context);
        require_capability('moodle/user:viewalldetails', $context);
        if (!$userids) {
            return [];
        }
        [$in, $params] = $DB->get_in_or_equal($userids);
        $users = $DB->get_records_select('user', "id $in AND deleted = 0", $params, 'id', 'id, auth, suspended');
        $roles = [];
        $sql = "SELECT DISTINCT ra.userid, r.shortname
                  FROM {role_assignments} ra
                  JOIN {role} r ON r.id = ra.roleid
                 WHERE ra.userid $in";
        foreach ($DB->get_recordset_sql($sql, $params) as $row) {
            $roles[(int) $row->userid][] = $row->shortname;
        }
        $admins = array_map('intval', explode(',', (string) $CFG->siteadmins));
        $facts = [];
        foreach ($users as $user) {
            $facts[] = [
                'id' => (int) $user->id,
                'siteadmin' => in_array((int) $user->id, $admins, true),
                'auth' => (string) $user->auth,
                'suspended' => (bool) $user->suspended,
                'roles' => $roles[(int) $user->id] ?? [],
            ];
        }
        return $facts;
    }

    /**
     * What each account's facts are.
     *
     * @return external_multiple_structure
     */
    public static function execute_returns(): external_multiple_structure {
        return new external_multiple_structure(new external_single_structure([
            'id' => new external_value(PARAM_INT, 'the user id'),
            'siteadmin' => new external_value(PARAM_BOOL, 'whether the account is a site administrator'),
            'auth' => new external_value(PARAM_ALPHANUMEXT, 'its authentication method'),
            'suspended' => new external_value(PARAM_BOOL, 'whether the account is suspended'),
            'roles' => new external_multiple_structure(
                new external_value(PARAM_ALPHANUMEXT, 'a role held in some context'), 'the roles it holds anywhere'),
        ]));
    }
}
