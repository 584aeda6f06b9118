/*
 * stage_list.h — every built-in stage kind, once. X(name) expands to the kind whose descriptor
 * is sl_stage_<name>, defined in stages/<name>.c. Expanded by the registry, help and docs.
 */
/* sources */
X(generate)
X(lines)
X(port)
X(lua)
X(values)
X(file_in)
/* transforms */
X(take)
X(skip)
X(throttle)
X(c_map)
X(c_filter)
X(map)
X(filter)
X(filter_map)
X(flat_map)
X(inspect)
X(take_while)
X(buffer_unordered)
X(buffered)
X(reduce)
X(parse)
X(encode)
X(decode)
X(chunks)
X(unchunk)
X(route)
X(merge)
/* sinks */
X(stdout)
X(file)
X(null)
X(collect)
X(lua_sink)
