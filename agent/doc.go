// Package agent is the node-local metadata agent: it serves consumers over
// Unix sockets and TCP, answers their hardened-mode token requests locally,
// and reads the upstream metadata service with one token of its own through
// a cache that collapses concurrent misses. It owns the HTTP surface, the
// upstream token and the per-kind cache lifetimes; the cache itself lives in
// package cache and the wiring of flags in cmd/ecs-metadata-agent. An Agent
// is safe for concurrent use once New returns.
package agent
