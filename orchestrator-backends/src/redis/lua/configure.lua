-- configure_pool. KEYS[2] pool set. ARGV: name, config JSON, maxInstances, default lease ms.
local prev = call('HGET', K_STATE, 'json')
call('HSET', K_STATE, 'json', ARGV[2], 'max', ARGV[3], 'dur', ARGV[4])
call('SADD', KEYS[2], ARGV[1])
return { 'ok', prev }
