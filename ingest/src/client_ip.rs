//! Which address is the client, when proxies stand in between.
