// Package clients runs real metadata clients, unmodified, against the
// agent with the simulator upstream, all on loopback: credentials-go and
// alibaba-cloud-sdk-go reach it through HTTP_PROXY, and small test clients
// read the way cloud-init, ossutil and terway do. It holds tests only.
package clients
