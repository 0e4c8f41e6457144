"""Django's Redis cache, keeping its Redis client objects.

Django's `RedisCacheClient.get_client` builds a new `redis.Redis` for every operation (about
0.15 ms of CPU: its response-callback tables are copied each time), and the API's request-rate
throttle does two cache operations per request. The clients here are built once per connection
pool and reused; the pools, the serializer and everything else are Django's."""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
