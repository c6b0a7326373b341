package runlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exporter holds a run's figures as Prometheus metrics, named torus_*, in a
// registry of its own (with the Go runtime's and the process's collectors),
// and serves them over HTTP at /metrics (Listen). Every metric carries a
// rank label: the worker whose figures they are.
//
// A nil *Exporter takes every call and does nothing, so callers need not
// check whether --metrics-addr was given.
type Exporter struct {
	reg *prometheus.Registry

	step, loss, lr, gradNorm, tokensPerS, mfu prometheus.Gauge
	stepSeconds, commWait, dataWait           prometheus.Gauge
	peakRSS, ckptStep, restarts               prometheus.Gauge
	memory                                    *prometheus.GaugeVec
	// Exposed once a step has them (no label: one series, made on first use).
	evalLoss, deviceMemory *prometheus.GaugeVec
	tokens, steps, resumes prometheus.Counter
	stepHist               prometheus.Histogram

	now     func() time.Time
	mu      sync.Mutex
	started time.Time // the exporter's start: the checkpoint age's origin until a checkpoint is seen
	ckptAt  time.Time // when the newest checkpoint was written (started, in the background)

	srv  *http.Server
	addr net.Addr
	done chan error // Serve's result
}

// NewExporter makes the metrics of one worker (rank) and registers them.
func NewExporter(rank int) *Exporter {
	e := &Exporter{reg: prometheus.NewRegistry(), now: time.Now}
	e.started = e.now()
	labels := prometheus.Labels{"rank": strconv.Itoa(rank)}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "torus", Name: name, Help: help, ConstLabels: labels})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "torus", Name: name, Help: help, ConstLabels: labels})
	}
	e.step = gauge("step", "The optimizer steps applied so far (the last step's number).")
	e.loss = gauge("loss", "The last step's mean cross-entropy per target token, nats.")
	lazy := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "torus", Name: name, Help: help, ConstLabels: labels}, nil)
	}
	e.evalLoss = lazy("eval_loss", "The latest evaluation loss, nats (absent until a step reports eval_loss).")
	e.lr = gauge("learning_rate", "The last step's learning rate.")
	e.gradNorm = gauge("grad_norm", "The last step's global gradient norm, before clipping.")
	e.tokensPerS = gauge("tokens_per_second", "The last step's throughput, tokens per second.")
	e.mfu = gauge("mfu_ratio", "The last step's model FLOPs utilization, 0-1 (0: the device's peak is unknown).")
	e.stepSeconds = gauge("step_seconds", "The last step's wall time, seconds.")
	e.commWait = gauge("comm_wait_seconds", "The last step's time blocked on communication with other workers, seconds.")
	e.dataWait = gauge("data_wait_seconds", "The last step's time waiting for its batches, seconds.")
	e.peakRSS = gauge("peak_rss_bytes", "The process's peak resident set size, bytes.")
	e.deviceMemory = lazy("device_memory_used_bytes", "The device memory this process holds, bytes (on a GPU: absent on the CPU).")
	e.ckptStep = gauge("checkpoint_step", "The step of the newest checkpoint written or resumed from (0: none).")
	e.restarts = gauge("restarts", "The job's restart count (torus launch's attempt; 0 for the first).")
	e.memory = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "torus", Name: "memory_bytes",
		Help: "What this worker holds, by component: weights, grads, optim, activations (the step's resident peak).", ConstLabels: labels},
		[]string{"component"})
	e.tokens = counter("tokens_total", "Target tokens trained on by this process.")
	e.steps = counter("steps_total", "Steps taken by this process.")
	e.resumes = counter("resumes_total", "Times this process resumed the run from a checkpoint.")
	e.stepHist = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "torus", Name: "step_duration_seconds",
		Help: "Step wall times, seconds.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "torus", Name: "checkpoint_age_seconds",
		Help: "Seconds since the newest checkpoint was written (or, before the first, since the run started here).", ConstLabels: labels},
		e.checkpointAge)
	e.reg.MustRegister(e.step, e.loss, e.evalLoss, e.lr, e.gradNorm, e.tokensPerS, e.mfu, e.stepSeconds, e.commWait,
		e.dataWait, e.peakRSS, e.deviceMemory, e.ckptStep, e.restarts, e.memory, e.tokens, e.steps, e.resumes, e.stepHist, age,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return e
}

// Handler serves the exporter's registry in the Prometheus text format.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Listen serves /metrics on addr (HOST:PORT; port 0 picks one) until Close,
// and returns the address it listens on.
func (e *Exporter) Listen(addr string) (net.Addr, error) {
	if e == nil {
		return nil, errors.New("metrics: no exporter")
	}
	if e.srv != nil {
		return nil, fmt.Errorf("metrics: already serving on %s", e.addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", e.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "torus: metrics at /metrics")
	})
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	e.done = make(chan error, 1)
	e.addr = ln.Addr()
	go func() { e.done <- e.srv.Serve(ln) }()
	return e.addr, nil
}

// ServeMetrics makes rank's exporter and serves it on addr (Listen).
func ServeMetrics(addr string, rank int) (*Exporter, error) {
	e := NewExporter(rank)
	if _, err := e.Listen(addr); err != nil {
		return nil, err
	}
	return e, nil
}

// Addr is the address the exporter listens on, or "" when it does not.
func (e *Exporter) Addr() string {
	if e == nil || e.addr == nil {
		return ""
	}
	return e.addr.String()
}

// Close stops serving: scrapes in flight get up to a second to finish.
func (e *Exporter) Close() error {
	if e == nil || e.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	if serr := <-e.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	e.srv, e.addr = nil, nil
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Observe takes one step's figures: s is what the step writes to
// metrics.jsonl (the trainer's StepStats, as its step callback hands it over).
// A field the step leaves out leaves its metric as it was.
func (e *Exporter) Observe(s any) error {
	if e == nil {
		return nil
	}
	l, err := lineOf(s)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	for field, g := range map[string]prometheus.Gauge{
		"step": e.step, "loss": e.loss, "lr": e.lr, "grad_norm": e.gradNorm,
		"tokens_per_s": e.tokensPerS, "mfu": e.mfu, "step_seconds": e.stepSeconds,
		"comm_wait_seconds": e.commWait, "data_wait_seconds": e.dataWait, "peak_rss_bytes": e.peakRSS,
		"memory.weights":          e.memory.WithLabelValues("weights"),
		"memory.grads":            e.memory.WithLabelValues("grads"),
		"memory.optim":            e.memory.WithLabelValues("optim"),
		"memory.activations_peak": e.memory.WithLabelValues("activations"),
	} {
		if v, ok := l.num[field]; ok {
			g.Set(v)
		}
	}
	for field, g := range map[string]*prometheus.GaugeVec{"eval_loss": e.evalLoss, "device_memory_used_bytes": e.deviceMemory} {
		if v, ok := l.num[field]; ok {
			g.WithLabelValues().Set(v)
		}
	}
	if v := l.num["tokens"]; v > 0 {
		e.tokens.Add(v)
	}
	e.steps.Inc()
	if v, ok := l.num["step_seconds"]; ok {
		e.stepHist.Observe(v)
	}
	if l.str["checkpoint"] != "" {
		e.checkpointed(int(l.num["step"]), e.now())
	}
	return nil
}

// Resumed records that this process continues the run from the checkpoint of
// step, written at written (its files' time; zero: unknown, now).
func (e *Exporter) Resumed(step int, written time.Time) {
	if e == nil {
		return
	}
	e.resumes.Inc()
	e.step.Set(float64(step))
	if written.IsZero() {
		written = e.now()
	}
	e.checkpointed(step, written)
}

// SetRestarts records the job's restart count, when the launcher knows it.
func (e *Exporter) SetRestarts(n int) {
	if e == nil {
		return
	}
	e.restarts.Set(float64(n))
}

func (e *Exporter) checkpointed(step int, at time.Time) {
	e.ckptStep.Set(float64(step))
	e.mu.Lock()
	e.ckptAt = at
	e.mu.Unlock()
}

func (e *Exporter) checkpointAge() float64 {
	e.mu.Lock()
	at := e.ckptAt
	if at.IsZero() {
		at = e.started
	}
	e.mu.Unlock()
	return max(e.now().Sub(at).Seconds(), 0)
}
