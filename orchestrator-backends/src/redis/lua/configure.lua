-- configure_pool. ARGV: name, config JSON, maxInstances, default lease ms. The pool set
-- is written by the caller after this (a separate key, in another slot on a cluster).
local prev = call('HGET', K_STATE, 'json')
call('HSET', K_STATE, 'json', ARGV[2], 'max', ARGV[3], 'dur', ARGV[4])
return { 'ok', prev }
