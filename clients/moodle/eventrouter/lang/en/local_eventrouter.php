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
$string['httpsrequired'] = 'The URL must start with https:// (http:// is accepted only for this machine, 127.0.0.1 or localhost, for a router in development).';
$string['pluginname'] = 'Event router';
$string['privacy:metadata:eventrouter'] = 'Enrolment and grade events are sent to the college\'s BTEC event router, which passes them on to its CRM (Zoho CRM).';
$string['privacy:metadata:eventrouter:courseid'] = 'The course of the enrolment or grade.';
$string['privacy:metadata:eventrouter:finalgrade'] = 'The grade given, and its letter or scale item.';
$string['privacy:metadata:eventrouter:relateduserid'] = 'The id of the user enrolled or graded.';
$string['privacy:metadata:eventrouter:timecreated'] = 'When it happened.';
$string['privacy:metadata:eventrouter:userid'] = 'The id of the user who made the change.';
$string['privacy:metadata:queue'] = 'An event waiting to be sent to the event router, kept only until the router has it.';
$string['privacy:metadata:queue:body'] = 'The event as it is sent: the users, the course, and for a grade the grade given.';
$string['privacy:metadata:queue:courseid'] = 'The course of the enrolment or grade.';
$string['privacy:metadata:queue:lasterror'] = 'What the router last answered, while the event could not be sent.';
$string['privacy:metadata:queue:relateduserid'] = 'The id of the user enrolled or graded.';
$string['privacy:metadata:queue:timecreated'] = 'When it happened.';
$string['privacy:metadata:queue:userid'] = 'The id of the user who made the change.';
$string['routerrefused'] = 'The event router refused the event; it is kept, and sent again once the router or the event is fixed: {$a}';
$string['routerunavailable'] = 'The event router could not take the event now; it is kept and will be sent again: {$a}';
$string['routerurl'] = 'Router URL';
$string['routerurl_desc'] = 'The base URL of the router\'s API, e.g. https://abc123.execute-api.eu-west-2.amazonaws.com. Empty: nothing is sent.';
$string['routeurl_desc'] = 'Only if this route is served elsewhere; empty: the router URL followed by the route\'s path.';
$string['secret'] = 'Signing secret';
$string['secret_desc'] = 'The Moodle webhook secret of the router (its MoodleWebhookSecretArn output). Every event is signed with it and the time it is sent (HMAC-SHA256, X-Moodle-Signature and X-Moodle-Timestamp).';
$string['status'] = 'Events waiting for the router';
$string['status_desc'] = '{$a->waiting} events waiting (the oldest from {$a->oldest}); {$a->refused} refused by the router, listed below. Send them now with <code>php local/eventrouter/cli/resend.php</code>; see them with <code>php local/eventrouter/cli/status.php</code>.';
$string['taskrequeueevents'] = 'Give waiting router events a task to send them';
$string['tasksendevent'] = 'Send an event to the event router';
$string['timeout'] = 'Timeout (seconds)';
$string['timeout_desc'] = 'How long to wait for the router\'s answer before trying again later.';
