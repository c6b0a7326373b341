package data

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
)

// ExpandPath replaces $VAR and ${VAR} in p with their environment values.
// $GOROOT, when unset, is the output of `go env GOROOT`, else runtime.GOROOT().
// Any other unset (or empty) variable is an error: expanding it to "" would
// silently turn "$DATA/books" into "/books".
func ExpandPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("no path given")
	}
	var unset []string
	out := os.Expand(p, func(name string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		if name == "GOROOT" {
			return goroot()
		}
		unset = append(unset, "$"+name)
		return ""
	})
	if len(unset) > 0 {
		return "", fmt.Errorf("path %q: %s not set", p, strings.Join(unset, ", "))
	}
	return out, nil
}

// goroot is the Go installation root, asked of the go command once.
var goroot = sync.OnceValue(func() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if root := strings.TrimSpace(string(out)); err == nil && root != "" {
		return root
	}
	return runtime.GOROOT() //nolint:staticcheck // the fallback the recipe documents
})
