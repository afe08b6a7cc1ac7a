// Package kubernetes holds the Kubernetes manifests of imgfab serve (the *.yaml files beside this
// one; `kubectl apply -k deploy/kubernetes`) and, in manifests_test.go, their check: every
// document decoded strictly into its Kubernetes API type, and the security and wiring properties
// the deployment relies on. It has no Go code of its own.
package kubernetes
