<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * English strings of local_eventrouter.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['enrollmenturl'] = 'Enrolment route URL';
$string['gradeurl'] = 'Grade route URL';
$string['pluginname'] = 'Event router';
$string['privacy:metadata:eventrouter'] = 'Enrolment and grade events are sent to the college\'s BTEC event router, which passes them on to its CRM (Zoho CRM).';
$string['privacy:metadata:eventrouter:courseid'] = 'The course of the enrolment or grade.';
$string['privacy:metadata:eventrouter:finalgrade'] = 'The grade given, and its letter or scale item.';
$string['privacy:metadata:eventrouter:relateduserid'] = 'The id of the user enrolled or graded.';
$string['privacy:metadata:eventrouter:timecreated'] = 'When it happened.';
$string['privacy:metadata:eventrouter:userid'] = 'The id of the user who made the change.';
$string['routerrefused'] = 'The event router refused the event: {$a}';
$string['routerunavailable'] = 'The event router could not take the event now ({$a}); it will be sent again.';
$string['routerurl'] = 'Router URL';
$string['routerurl_desc'] = 'The base URL of the router\'s API, e.g. https://abc123.execute-api.eu-west-2.amazonaws.com. Empty: nothing is sent.';
$string['routeurl_desc'] = 'Only if this route is served elsewhere; empty: the router URL followed by the route\'s path.';
$string['secret'] = 'Signing secret';
$string['secret_desc'] = 'The Moodle webhook secret of the router (its MoodleWebhookSecretArn output). Every event is signed with it (HMAC-SHA256, X-Moodle-Signature).';
$string['tasksendevent'] = 'Send an event to the event router';
$string['timeout'] = 'Timeout (seconds)';
$string['timeout_desc'] = 'How long to wait for the router\'s answer before trying again later.';
