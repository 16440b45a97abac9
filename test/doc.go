// Package test holds the project's end-to-end tests: the built binaries,
// real metadata clients and the deployment manifests, checked against the
// simulator on loopback. It is its own module so that the agent's go.mod
// carries no SDK and no Kubernetes library.
package test
