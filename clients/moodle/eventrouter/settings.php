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
    $settings->add(new admin_setting_configtext('local_eventrouter/routerurl',
        get_string('routerurl', 'local_eventrouter'), get_string('routerurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new admin_setting_configpasswordunmask('local_eventrouter/secret',
        get_string('secret', 'local_eventrouter'), get_string('secret_desc', 'local_eventrouter'), ''));
    $settings->add(new admin_setting_configtext('local_eventrouter/enrollmenturl',
        get_string('enrollmenturl', 'local_eventrouter'), get_string('routeurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new admin_setting_configtext('local_eventrouter/gradeurl',
        get_string('gradeurl', 'local_eventrouter'), get_string('routeurl_desc', 'local_eventrouter'), '', PARAM_URL));
    $settings->add(new admin_setting_configtext('local_eventrouter/timeout',
        get_string('timeout', 'local_eventrouter'), get_string('timeout_desc', 'local_eventrouter'), 10, PARAM_INT));
}
