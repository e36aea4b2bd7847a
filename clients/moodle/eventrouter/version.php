<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * Sends Moodle's enrolment and grade events to the BTEC event router, signed, through ad hoc tasks.
 *
 * Tested on Moodle 4.5 LTS (4.5.6) and Moodle 5.0 (5.0.6+), and claimed for those only.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$plugin->component = 'local_eventrouter';
$plugin->version = 2026120301;
$plugin->requires = 2024100700; // Moodle 4.5.
$plugin->supported = [405, 500];
$plugin->maturity = MATURITY_STABLE;
$plugin->release = '1.1.0';
