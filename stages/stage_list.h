/*
 * stage_list.h — every built-in stage kind, once. X(name) expands to the kind whose descriptor
 * is sl_stage_<name>, defined in stages/<name>.c. Expanded by the registry, help and docs.
 */
/* sources */
X(generate)
X(lines)
X(port)
X(values)
/* transforms */
X(take)
X(skip)
X(throttle)
X(c_map)
X(c_filter)
/* sinks */
X(stdout)
X(file)
X(null)
X(collect)
