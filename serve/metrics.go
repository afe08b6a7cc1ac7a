package serve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the service's Prometheus metrics, in a registry of its own (no global state: two
// Servers in one process, as in the tests, do not share counters).
type metrics struct {
	reg         *prometheus.Registry
	builds      *prometheus.CounterVec
	requests    *prometheus.CounterVec
	cacheHits   prometheus.Counter
	bytesServed prometheus.Counter
	queue       prometheus.Gauge
	running     prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imgfab_builds_total",
			Help: "Builds by result: built, failed, refused (queue full), stored-elsewhere (another replica stored it first)."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imgfab_http_requests_total",
			Help: "HTTP requests by status code."}, []string{"code"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "imgfab_cache_hits_total",
			Help: "Artifact requests answered from the store without a build."}),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{Name: "imgfab_bytes_served_total",
			Help: "Artifact bytes sent to clients."}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imgfab_build_queue_depth",
			Help: "Builds waiting for a build slot on this replica (the HPA's signal)."}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imgfab_builds_running",
			Help: "Builds running on this replica."}),
	}
	m.reg.MustRegister(m.builds, m.requests, m.cacheHits, m.bytesServed, m.queue, m.running,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
