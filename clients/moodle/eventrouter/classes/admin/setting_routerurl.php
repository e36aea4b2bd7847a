<?php
// This file is part of the BTEC event router (local_eventrouter), free software under the GNU GPL v3 or later.

namespace local_eventrouter\admin;

/**
 * A router URL: https, or http to this machine only (a router in development).
 *
 * @package    local_eventrouter
 * @copyright  2026 The BTEC event router authors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class setting_routerurl extends \admin_setting_configtext {
    /**
     * Refuse a URL events could not safely be sent to.
     *
     * @param string $data
     * @return true|string
     */
    public function validate($data) {
        $valid = parent::validate($data);
        if ($valid !== true || trim((string) $data) === '') {
            return $valid;
        }
        return \local_eventrouter\sender::safe(trim((string) $data)) ? true : get_string('httpsrequired', 'local_eventrouter');
    }
}
