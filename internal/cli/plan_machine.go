package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/recipe"
)

// loaderBytes estimates what the data loader holds: each of its lanes caches
// the tokens (int32) of the document it reads, and the one being read is in
// memory as text too; documents of the mean size. 0 when the corpus cannot be
// listed (the plan does not need the data to exist).
func loaderBytes(r recipe.Recipe) int64 {
	var total, docs int64
	for _, s := range r.Data.Sources {
		c, err := data.OpenCorpus([]data.SourceConfig{{Type: s.Type, Path: s.Path, Include: s.Include, Exclude: s.Exclude, DocPer: s.DocPer, Field: s.Field, Column: s.Column}})
		if err != nil {
			return 0
		}
		var bytes int64
		switch s.Type {
		case "jsonl": // one document per line: the file's size over its lines
			path := strings.TrimSuffix(c.Doc(0).Name, ":1")
			if fi, err := os.Stat(path); err == nil {
				bytes = fi.Size()
			}
		default:
			for i := range c.Len() {
				bytes += docBytes(c.Doc(i).Name, s.Include)
			}
		}
		total, docs = total+bytes, docs+int64(c.Len())
	}
	if docs == 0 {
		return 0
	}
	lanes := min(int64(max(r.Data.Interleave, 1)), docs)
	mean := total / docs
	return lanes*mean*4 + mean
}

// docBytes is the size of a text_file or text_dir document: a file, or a
// directory's matching files (its name ends in a separator).
func docBytes(name string, include []string) int64 {
	if !strings.HasSuffix(name, string(filepath.Separator)) {
		if fi, err := os.Stat(name); err == nil {
			return fi.Size()
		}
		return 0
	}
	ents, err := os.ReadDir(name)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		ok := len(include) == 0
		for _, g := range include {
			if m, _ := filepath.Match(g, e.Name()); m {
				ok = true
			}
		}
		if fi, err := e.Info(); ok && err == nil {
			n += fi.Size()
		}
	}
	return n
}

// goMemLimit reads GOMEMLIMIT (bytes, or with a B, KiB, MiB, GiB, TiB suffix); 0: none.
func goMemLimit(v string) (int64, error) {
	if v == "" || v == "off" {
		return 0, nil
	}
	n, err := parseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("plan: GOMEMLIMIT: %w", err)
	}
	return n, nil
}

// gcFactor is 1 + GOGC/100: how far the Go heap grows past what is live.
func gcFactor(gogc string) (float64, error) {
	if gogc == "" {
		return 2, nil
	}
	if strings.EqualFold(gogc, "off") {
		return 0, fmt.Errorf("plan: GOGC=off: the heap grows without bound, no peak to predict")
	}
	v, err := strconv.Atoi(gogc)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("plan: GOGC=%q: want a positive percentage", gogc)
	}
	return 1 + float64(v)/100, nil
}

// machineMemory is --memory: a size, or auto (this machine's MemAvailable).
func machineMemory(flag string) (int64, string, error) {
	if flag != "auto" {
		n, err := parseBytes(flag)
		if err != nil {
			return 0, "", fmt.Errorf("plan: --memory: %w", err)
		}
		return n, "--memory", nil
	}
	n, err := memAvailable()
	if err != nil {
		return 0, "", fmt.Errorf("plan: --memory auto: %w (give --memory 16GiB)", err)
	}
	return n, "MemAvailable", nil
}

func memAvailable() (int64, error) { return memInfo("MemAvailable") }

// memInfo is a /proc/meminfo figure in bytes (MemTotal, MemAvailable).
func memInfo(key string) (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %q", s.Text())
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", key)
}

// parseBytes reads 80GiB, 80GB (10^9), 512MiB, 1.5TB or a plain byte count.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) { // GiB is tried before GB, and B last
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 80GiB, 80GB, 512MiB, or bytes)", s)
	}
	return int64(v * mult), nil
}

// calibrateMatmul times float32 matmuls on the Go backend for about d and
// returns the best rate, GFLOP/s.
func calibrateMatmul(d time.Duration) (float64, error) {
	backend, err := device.CPU()
	if err != nil {
		return 0, err
	}
	return model.MatmulGFLOPs(backend.Compute, d)
}
