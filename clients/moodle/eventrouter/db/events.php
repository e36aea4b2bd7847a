<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * The Moodle events the router takes: enrolments of users in courses, and their grades.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$observers = [
    ['eventname' => '\core\event\user_enrolment_created', 'callback' => '\local_eventrouter\observer::enrolment'],
    ['eventname' => '\core\event\user_enrolment_updated', 'callback' => '\local_eventrouter\observer::enrolment'],
    ['eventname' => '\core\event\user_enrolment_deleted', 'callback' => '\local_eventrouter\observer::enrolment'],
    ['eventname' => '\core\event\user_graded', 'callback' => '\local_eventrouter\observer::graded'],
];
