// Package testimage builds small OCI layouts and layers for tests: tar entries of every kind,
// the minimum boot tree a build needs, layers and one-image layouts with fixed dates, and a
// loopback registry to push them to, with faults injected on demand. It is for tests only: the
// product never imports it.
package testimage
