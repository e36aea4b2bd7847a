<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * Site administration > Plugins > Local plugins > Event router.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

if ($hassiteconfig) {
    $settings = new admin_settingpage('local_eventrouter', get_string('pluginname', 'local_eventrouter'));
    $ADMIN->add('localplugins', $settings);
    if ($ADMIN->fulltree) {
        // What waits for the router, so an administrator sees a stuck queue where they set the plugin up.
        $summary = \local_eventrouter\queue::summary();
        $status = get_string('status_desc', 'local_eventrouter', (object) [
            'waiting' => $summary->waiting,
            'oldest' => $summary->oldest ? userdate($summary->oldest) : '-',
            'refused' => count($summary->refused),
        ]);
        foreach ($summary->refused as $row) {
            $status .= html_writer::div(s("{$row->eventid} ({$row->route}): {$row->lasterror}"));
        }
        $settings->add(new admin_setting_heading('local_eventrouter/status', get_string('status', 'local_eventrouter'),
            $status));
    }
    $settings->add(new \local_eventrouter\admin\setting_routerurl('local_eventrouter/routerurl',
        get_string('routerurl', 'local_eventrouter'), get_string('routerurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new admin_setting_configpasswordunmask('local_eventrouter/secret',
        get_string('secret', 'local_eventrouter'), get_string('secret_desc', 'local_eventrouter'), ''));
    $settings->add(new \local_eventrouter\admin\setting_routerurl('local_eventrouter/enrollmenturl',
        get_string('enrollmenturl', 'local_eventrouter'), get_string('routeurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new \local_eventrouter\admin\setting_routerurl('local_eventrouter/gradeurl',
        get_string('gradeurl', 'local_eventrouter'), get_string('routeurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new admin_setting_configtext('local_eventrouter/timeout',
        get_string('timeout', 'local_eventrouter'), get_string('timeout_desc', 'local_eventrouter'), 10, PARAM_INT));
}
