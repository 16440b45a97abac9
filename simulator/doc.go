// Package simulator is a loopback fake of the Alibaba Cloud ECS instance
// metadata service, for tests and benchmarks of its clients. It owns the
// served tree (built from an Instance), the hardened-mode token exchange,
// rotating RAM credentials, throttling, injectable faults and request
// counters; it owns no cache and never talks to the real service.
//
// A Server is safe for concurrent use: every setter may be called while
// requests are being served. Time is read through Options.Now, so token
// expiry, credential rotation and throttling follow a fake clock in tests.
package simulator
