// Package load drives an HTTP/1.1 server over keep-alive TCP or Unix socket
// connections and measures it: a closed loop of N connections for a time or
// a request count, or a herd of C requests for one key released at once.
// It speaks just enough HTTP/1.1 to send prepared GETs and discard answers,
// so that the generator costs the machine less than the server it measures.
// It aims only at loopback addresses and Unix sockets. Its functions are
// safe for concurrent use; a Histogram is not.
package load
