<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * Every 15 minutes, every event still waiting gets a task to send it, should its own task be gone.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$tasks = [
    [
        'classname' => '\local_eventrouter\task\requeue_events',
        'blocking' => 0,
        'minute' => '*/15',
        'hour' => '*',
        'day' => '*',
        'month' => '*',
        'dayofweek' => '*',
    ],
];
