<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * How many events wait for the router, since when, and what the router last said of those it refused:
 *     php local/eventrouter/cli/status.php [--json]
 * Exits 0 when nothing waits, 1 otherwise.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

define('CLI_SCRIPT', true);
require(__DIR__ . '/../../../config.php');
require_once($CFG->libdir . '/clilib.php');

[$options] = cli_get_params(['json' => false, 'help' => false], ['h' => 'help']);
if ($options['help']) {
    echo "Shows the events waiting for the event router.\n  --json  as JSON\n";
    exit(0);
}
$summary = \local_eventrouter\queue::summary();
if ($options['json']) {
    echo json_encode($summary), "\n";
} else {
    mtrace("waiting: {$summary->waiting}");
    mtrace('oldest: ' . ($summary->oldest ? userdate($summary->oldest) : '-'));
    mtrace("failed at least once: {$summary->failing}");
    foreach ($summary->refused as $row) {
        mtrace("refused: event {$row->eventid} ({$row->route}): {$row->lasterror}");
    }
}
exit($summary->waiting === 0 ? 0 : 1);
