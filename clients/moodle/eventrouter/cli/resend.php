<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

/**
 * Sends the events waiting for the router now, oldest first, and prints what the router answered:
 *     php local/eventrouter/cli/resend.php [--eventid=<id>] [--limit=<n>]
 * An event the router takes is removed; any other is kept (and its task keeps trying). Exits 0 when every
 * event tried was sent.
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

define('CLI_SCRIPT', true);
require(__DIR__ . '/../../../config.php');
require_once($CFG->libdir . '/clilib.php');

[$options] = cli_get_params(['eventid' => '', 'limit' => 0, 'help' => false], ['h' => 'help']);
if ($options['help']) {
    echo "Sends the waiting events to the event router now.\n  --eventid=<id>  only this event\n" .
        "  --limit=<n>     at most n events\n";
    exit(0);
}
$conditions = $options['eventid'] !== '' ? ['eventid' => $options['eventid']] : [];
$rows = $DB->get_records(\local_eventrouter\queue::TABLE, $conditions, 'timecreated, id', '*', 0, (int) $options['limit']);
$failed = 0;
foreach ($rows as $row) {
    $answer = \local_eventrouter\queue::send($row);
    $failed += $answer->sent ? 0 : 1;
    mtrace("{$row->eventid} ({$row->route}): " . ($answer->sent ? 'sent' : 'kept') . " - {$answer->summary}");
}
mtrace(count($rows) . " tried, $failed kept");
exit($failed === 0 ? 0 : 1);
