<?php
// Test helper for a real Moodle, run with `moodle.sh php`: what a test needs that the router's
// web-service functions do not offer (an administrator's actions, and looking at the result).
//   create_course <idnumber> [visible] prints {"id": <course id>}
//   enrolment <userid> <courseid>      prints {"status": "active" | "suspended" | null, "student": bool}
//   ws_user <token> <capability>... -- <function>...
//                                      sets up what docs/connect-moodle.md tells an administrator to: a
//                                      user with a system role holding exactly those capabilities (allowed
//                                      to assign the student role), an external service "event_router"
//                                      for that user alone holding exactly those functions, and the token;
//                                      prints {"userid": <id>}; safe to run again
//   dirroot                            prints {"dirroot": <the Moodle code's folder>}
//   set_config <plugin> <name> <value> sets a plugin setting, as its settings page would
//   student <username>                 makes a user, prints {"id": <id>}
//   add_user <username> <email> [idnumber] [auth]   makes a user as an administrator would, prints {"id": <id>}
//   teacher <userid> <courseid>        enrols as editing teacher (as an administrator would)
//   admin                              prints {"id", "email"} of the site administrator
//   suspend_enrolment <userid> <courseid>  suspends a manual enrolment by hand
//   suspend_user <userid>              suspends an account by hand
//   enrol <userid> <courseid> [actor]  enrols as student with the manual method (as a teacher would: actor)
//   unenrol <userid> <courseid>        removes that enrolment
//   grade <userid> <courseid> <value>  gives a grade on the course's manual item "Unit 1" (made once)
//   regrade <courseid>                 Moodle computes the course's totals (as the gradebook does when viewed),
//                                      prints {"courseitemid": <the course total's grade item>}
//   privacy <component>                prints {"compliant": bool, "external": [...], "tables": [...]} from Moodle's
//                                      privacy API
//   queued <component>                 prints {"tasks": n, "failing": n}: ad hoc tasks waiting
//   waiting                            prints local_eventrouter's queue summary {"waiting", "oldest", "failing", ...}
//   forget <userid>                    deletes local_eventrouter's data of a user through Moodle's privacy API
//   drop_tasks <component>             deletes the component's ad hoc tasks (as Moodle does with stopped ones)
//   queue_v1 <route> <body>            queues a task as local_eventrouter 1.0 did (the event in the task)
define('CLI_SCRIPT', true);
require(getenv('MOODLE_DIR') . '/config.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->libdir . '/enrollib.php');

[$script, $action] = [$argv[0], $argv[1] ?? ''];
if ($action === 'create_course') {
    $idnumber = $argv[2];
    $course = create_course((object) [
        'fullname' => 'Contract test ' . $idnumber,
        'shortname' => $idnumber,
        'idnumber' => $idnumber,
        'visible' => (int) ($argv[3] ?? 1),
        'category' => $DB->get_field_sql('SELECT MIN(id) FROM {course_categories}'),
    ]);
    echo json_encode(['id' => (int) $course->id]), "\n";
} else if ($action === 'enrolment') {
    [$userid, $courseid] = [(int) $argv[2], (int) $argv[3]];
    $instance = $DB->get_record('enrol', ['courseid' => $courseid, 'enrol' => 'manual'], '*', MUST_EXIST);
    $ue = $DB->get_record('user_enrolments', ['enrolid' => $instance->id, 'userid' => $userid]);
    $context = context_course::instance($courseid);
    $student = $DB->get_field('role', 'id', ['shortname' => 'student']);
    $isstudent = $DB->record_exists('role_assignments',
        ['roleid' => $student, 'contextid' => $context->id, 'userid' => $userid]);
    $status = $ue ? ((int) $ue->status === ENROL_USER_SUSPENDED ? 'suspended' : 'active') : null;
    echo json_encode(['status' => $status, 'student' => $isstudent]), "\n";
} else if ($action === 'ws_user') {
    require_once($CFG->libdir . '/accesslib.php');
    require_once($CFG->dirroot . '/user/lib.php');
    require_once($CFG->dirroot . '/webservice/lib.php');
    $rest = array_slice($argv, 3);
    $separator = array_search('--', $rest, true);
    [$token, $capabilities, $functions] = [$argv[2], array_slice($rest, 0, $separator), array_slice($rest, $separator + 1)];
    \core\session\manager::set_user(get_admin());
    $system = context_system::instance();
    $roleid = $DB->get_field('role', 'id', ['shortname' => 'eventrouter']);
    if (!$roleid) {
        $roleid = create_role('Event router', 'eventrouter', 'The event router web-service user');
        set_role_contextlevels($roleid, [CONTEXT_SYSTEM]);
    }
    // Exactly the capabilities given: remove any an earlier run granted.
    $DB->delete_records('role_capabilities', ['roleid' => $roleid, 'contextid' => $system->id]);
    foreach ($capabilities as $capability) {
        assign_capability($capability, CAP_ALLOW, $roleid, $system->id, true);
    }
    $student = $DB->get_field('role', 'id', ['shortname' => 'student'], MUST_EXIST);
    if (!$DB->record_exists('role_allow_assign', ['roleid' => $roleid, 'allowassign' => $student])) {
        core_role_set_assign_allowed($roleid, $student);
    }
    $user = $DB->get_record('user', ['username' => 'eventrouter', 'deleted' => 0]);
    if (!$user) {
        $id = user_create_user((object) ['username' => 'eventrouter', 'password' => random_string(24) . 'Aa1!',
            'firstname' => 'Event', 'lastname' => 'Router', 'email' => 'eventrouter@example.invalid',
            'auth' => 'manual', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id]);
        $user = $DB->get_record('user', ['id' => $id]);
    }
    role_assign($roleid, $user->id, $system->id);
    $ws = new webservice();
    $service = $ws->get_external_service_by_shortname('event_router');
    if (!$service) {
        $id = $ws->add_external_service((object) ['name' => 'Event router', 'shortname' => 'event_router',
            'enabled' => 1, 'restrictedusers' => 1, 'requiredcapability' => '']);
        $service = $DB->get_record('external_services', ['id' => $id]);
    }
    foreach ($ws->get_external_functions([$service->id]) as $function) {  // exactly the functions given
        if (!in_array($function->name, $functions, true)) {
            $ws->remove_external_function_from_service($function->name, $service->id);
        }
    }
    foreach ($functions as $function) {
        if (!$ws->service_function_exists($function, $service->id)) {
            $ws->add_external_function_to_service($function, $service->id);
        }
    }
    if (!$DB->record_exists('external_services_users', ['externalserviceid' => $service->id, 'userid' => $user->id])) {
        $ws->add_ws_authorised_user((object) ['externalserviceid' => $service->id, 'userid' => $user->id]);
    }
    if (!$DB->record_exists('external_tokens', ['token' => $token])) {
        $made = \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service, $user->id, $system, 0, '',
            'eventrouter');
        $DB->set_field('external_tokens', 'token', $token, ['token' => $made]);
    }
    $DB->set_field('external_tokens', 'externalserviceid', $service->id, ['token' => $token]);
    accesslib_clear_all_caches(true);
    echo json_encode(['userid' => (int) $user->id]), "\n";
} else if ($action === 'dirroot') {
    echo json_encode(['dirroot' => $CFG->dirroot]), "\n";
} else if ($action === 'set_config') {
    set_config($argv[3], $argv[4], $argv[2]);
    echo json_encode(['set' => $argv[3]]), "\n";
} else if ($action === 'student') {
    require_once($CFG->dirroot . '/user/lib.php');
    $id = user_create_user((object) ['username' => $argv[2], 'password' => random_string(20) . 'Aa1!',
        'firstname' => 'Plugin', 'lastname' => 'Student', 'email' => $argv[2] . '@example.invalid',
        'auth' => 'manual', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id]);
    echo json_encode(['id' => (int) $id]), "\n";
} else if ($action === 'add_user') {
    require_once($CFG->dirroot . '/user/lib.php');
    $id = user_create_user((object) ['username' => $argv[2], 'password' => random_string(20) . 'Aa1!',
        'firstname' => 'Existing', 'lastname' => 'User', 'email' => $argv[3], 'idnumber' => $argv[4] ?? '',
        'auth' => $argv[5] ?? 'manual', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id]);
    echo json_encode(['id' => (int) $id]), "\n";
} else if ($action === 'teacher') {
    [$userid, $courseid] = [(int) $argv[2], (int) $argv[3]];
    $instance = $DB->get_record('enrol', ['courseid' => $courseid, 'enrol' => 'manual'], '*', MUST_EXIST);
    enrol_get_plugin('manual')->enrol_user($instance, $userid, $DB->get_field('role', 'id', ['shortname' => 'editingteacher']));
    echo json_encode(['teacher' => true]), "\n";
} else if ($action === 'admin') {
    $admin = get_admin();
    echo json_encode(['id' => (int) $admin->id, 'email' => $admin->email]), "\n";
} else if ($action === 'suspend_enrolment') {
    [$userid, $courseid] = [(int) $argv[2], (int) $argv[3]];
    $instance = $DB->get_record('enrol', ['courseid' => $courseid, 'enrol' => 'manual'], '*', MUST_EXIST);
    enrol_get_plugin('manual')->update_user_enrol($instance, $userid, ENROL_USER_SUSPENDED);
    echo json_encode(['suspended' => true]), "\n";
} else if ($action === 'suspend_user') {
    require_once($CFG->dirroot . '/user/lib.php');
    $user = $DB->get_record('user', ['id' => (int) $argv[2]], '*', MUST_EXIST);
    $user->suspended = 1;
    user_update_user($user, false, false);
    echo json_encode(['suspended' => true]), "\n";
} else if ($action === 'enrol' || $action === 'unenrol') {
    [$userid, $courseid] = [(int) $argv[2], (int) $argv[3]];
    $instance = $DB->get_record('enrol', ['courseid' => $courseid, 'enrol' => 'manual'], '*', MUST_EXIST);
    $plugin = enrol_get_plugin('manual');
    if (!empty($argv[4])) {
        \core\session\manager::set_user(core_user::get_user((int) $argv[4], '*', MUST_EXIST));
    }
    if ($action === 'enrol') {
        $plugin->enrol_user($instance, $userid, $DB->get_field('role', 'id', ['shortname' => 'student']));
    } else {
        $plugin->unenrol_user($instance, $userid);
    }
    echo json_encode([$action => true]), "\n";
} else if ($action === 'grade') {
    require_once($CFG->libdir . '/gradelib.php');
    [$userid, $courseid, $value] = [(int) $argv[2], (int) $argv[3], (float) $argv[4]];
    $item = grade_item::fetch(['courseid' => $courseid, 'itemtype' => 'manual', 'itemname' => 'Unit 1']);
    if (!$item) {
        $item = new grade_item(['courseid' => $courseid, 'itemtype' => 'manual', 'itemname' => 'Unit 1',
            'gradetype' => GRADE_TYPE_VALUE, 'grademax' => 100, 'grademin' => 0], false);
        $item->insert('manual');
    }
    $item->update_final_grade($userid, $value, 'test');
    echo json_encode(['itemid' => (int) $item->id]), "\n";
} else if ($action === 'regrade') {
    require_once($CFG->libdir . '/gradelib.php');
    $courseid = (int) $argv[2];
    grade_regrade_final_grades($courseid);
    echo json_encode(['courseitemid' => (int) grade_item::fetch_course_item($courseid)->id]), "\n";
} else if ($action === 'privacy') {
    $manager = new \core_privacy\manager();
    $metadata = $manager->get_metadata_for_components()[$argv[2]] ?? null;
    [$external, $tables] = [[], []];
    foreach ($metadata ? $metadata->get_collection() : [] as $item) {
        if ($item instanceof \core_privacy\local\metadata\types\external_location) {
            $external[] = $item->get_name();
        } else if ($item instanceof \core_privacy\local\metadata\types\database_table) {
            $tables[] = $item->get_name();
        }
    }
    echo json_encode(['compliant' => $manager->component_is_compliant($argv[2]), 'external' => $external,
        'tables' => $tables]), "\n";
} else if ($action === 'waiting') {
    echo json_encode(\local_eventrouter\queue::summary()), "\n";
} else if ($action === 'forget') {
    $user = core_user::get_user((int) $argv[2], '*', MUST_EXIST);
    $approved = new \core_privacy\local\request\approved_contextlist($user, 'local_eventrouter',
        [context_system::instance()->id]);
    \local_eventrouter\privacy\provider::delete_data_for_user($approved);
    echo json_encode(['forgot' => (int) $user->id]), "\n";
} else if ($action === 'drop_tasks') {
    echo json_encode(['dropped' => $DB->count_records('task_adhoc', ['component' => $argv[2]])]), "\n";
    $DB->delete_records('task_adhoc', ['component' => $argv[2]]);
} else if ($action === 'queue_v1') {
    $task = new \local_eventrouter\task\send_event();
    $task->set_custom_data(['route' => $argv[2], 'body' => $argv[3]]);
    \core\task\manager::queue_adhoc_task($task);
    echo json_encode(['queued' => true]), "\n";
} else if ($action === 'queued') {
    $tasks = $DB->count_records('task_adhoc', ['component' => $argv[2]]);
    $failing = $DB->count_records_select('task_adhoc', 'component = ? AND faildelay > 0', [$argv[2]]);
    echo json_encode(['tasks' => $tasks, 'failing' => $failing]), "\n";
} else {
    fwrite(STDERR, "usage: $script create_course <idnumber> | enrolment <userid> <courseid> | ws_user <token> <capability>... -- <function>...\n");
    exit(2);
}
