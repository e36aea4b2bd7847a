<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * Sends a signed connection test to the router's enrolment route and prints its answer:
 *     php local/eventrouter/cli/test_connection.php
 * The router logs it and its processor skips it (reason connection_test): it changes nothing.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

define('CLI_SCRIPT', true);
require(__DIR__ . '/../../../config.php');

$body = json_encode([
    'eventid' => \core\uuid::generate(),
    'eventname' => '\local_eventrouter\event\connection_test',
    'userid' => (int) get_admin()->id,
    'courseid' => (int) SITEID,
    'timecreated' => time(),
    'other' => [],
]);
$url = \local_eventrouter\sender::url('enrollment');
$answer = \local_eventrouter\sender::send('enrollment', $body);
mtrace("POST $url");
mtrace($answer->summary);
exit($answer->status >= 200 && $answer->status < 300 ? 0 : 1);
