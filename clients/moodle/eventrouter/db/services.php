<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * The web-service function the router calls before it changes a Moodle account: add it to the router's
 * external service (docs/connect-moodle.md of the router).
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$functions = [
    'local_eventrouter_get_account_facts' => [
        'classname' => '\local_eventrouter\external\get_account_facts',
        'description' => 'Whether accounts are site administrators, their authentication method and every role they hold'
            . ' anywhere: what the event router checks before it changes an account.',
        'type' => 'read',
        'capabilities' => 'moodle/user:viewalldetails',
    ],
];
