package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"whet/engine/atomicfile"
)

// Tensor is one tensor to write: Data holds the elements little-endian, as
// many bytes as the shape and dtype require.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
}

// F32Tensor packs float32 values.
func F32Tensor(name string, shape []int, values []float32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, DType: "F32", Shape: append([]int(nil), shape...), Data: data}
}

// BF16Tensor rounds float32 values to bfloat16 (nearest, ties to even).
func BF16Tensor(name string, shape []int, values []float32) Tensor {
	data := make([]byte, 2*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint16(data[2*i:], Float32ToBF16(v))
	}
	return Tensor{Name: name, DType: "BF16", Shape: append([]int(nil), shape...), Data: data}
}

// I32Tensor packs int32 values.
func I32Tensor(name string, shape []int, values []int32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
	}
	return Tensor{Name: name, DType: "I32", Shape: append([]int(nil), shape...), Data: data}
}

// check validates t before anything is written, so a bad tensor never
// replaces a good file.
func (t Tensor) check() error {
	if t.Name == "" || t.Name == "__metadata__" {
		return fmt.Errorf("tensor name %q is not allowed", t.Name)
	}
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return fmt.Errorf("tensor %q: unknown dtype %q (known: %s)", t.Name, t.DType, knownDTypes())
	}
	dims := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int64(d)
	}
	n, err := numElements(dims)
	if err != nil {
		return fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	if n > math.MaxInt64/int64(size) || int64(len(t.Data)) != n*int64(size) {
		return fmt.Errorf("tensor %q: shape %v of %s needs %d elements of %d bytes, but Data has %d bytes", t.Name, t.Shape, t.DType, n, size, len(t.Data))
	}
	return nil
}

// layout orders the data section: largest element size first, then by name,
// so that every tensor starts at an offset aligned to its element size (the
// header is padded to 8 bytes). The header lists the tensors by name.
func layout(tensors []Tensor) ([]Tensor, error) {
	seen := map[string]bool{}
	for _, t := range tensors {
		if err := t.check(); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tensor %q given twice", t.Name)
		}
		seen[t.Name] = true
	}
	ordered := append([]Tensor(nil), tensors...)
	sort.Slice(ordered, func(i, j int) bool {
		si, sj := dtypeSizes[ordered[i].DType], dtypeSizes[ordered[j].DType]
		if si != sj {
			return si > sj
		}
		return ordered[i].Name < ordered[j].Name
	})
	return ordered, nil
}

// encodeHeader returns the JSON header for tensors laid out in that order,
// padded with spaces to a multiple of 8 bytes.
func encodeHeader(ordered []Tensor, metadata map[string]string) ([]byte, error) {
	type placed struct {
		t          Tensor
		begin, end int64
	}
	list := make([]placed, len(ordered))
	var offset int64
	for i, t := range ordered {
		list[i] = placed{t, offset, offset + int64(len(t.Data))}
		offset += int64(len(t.Data))
	}
	sort.Slice(list, func(i, j int) bool { return list[i].t.Name < list[j].t.Name })

	var b strings.Builder
	b.WriteByte('{')
	first := true
	key := func(k string) error {
		if !first {
			b.WriteByte(',')
		}
		first = false
		enc, err := json.Marshal(k)
		if err != nil {
			return err
		}
		b.Write(enc)
		b.WriteByte(':')
		return nil
	}
	if len(metadata) > 0 {
		if err := key("__metadata__"); err != nil {
			return nil, err
		}
		enc, err := json.Marshal(metadata) // map keys come out sorted
		if err != nil {
			return nil, fmt.Errorf("__metadata__: %w", err)
		}
		b.Write(enc)
	}
	for _, p := range list {
		if err := key(p.t.Name); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", p.t.Name, err)
		}
		b.WriteString(`{"dtype":"`)
		b.WriteString(p.t.DType)
		b.WriteString(`","shape":[`)
		for i, d := range p.t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, p.begin, p.end)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return []byte(b.String()), nil
}

// Write stores tensors (and optional metadata) at path atomically: the file
// is written beside the target under a temporary name, synced, renamed over
// the target, and the folder synced. A failure at any point leaves whatever
// was at path before untouched.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	ordered, err := layout(tensors)
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	header, err := encodeHeader(ordered, metadata)
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(header); err != nil {
			return err
		}
		for _, t := range ordered {
			if _, err := w.Write(t.Data); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
		}
		return nil
	})
}

// writeAtomic fills a temporary file in path's folder through fill, then
// makes it appear at path in one rename. The temporary file is removed on
// any failure.
func writeAtomic(path string, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := atomicfile.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("safetensors: %s: %w", path, withoutPath(err))
		}
	}()
	w := bufio.NewWriterSize(tempFile{tmp}, 1<<20)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// tempFile writes to the temporary file, its errors without the
// *PathError that names the temporary file: the error names path once
// ("safetensors: X: no space left on device", where it said "safetensors:
// X: write .X.tmp-123: no space left on device").
type tempFile struct{ f *os.File }

// tempWrite, when set (tests), stands in for the temporary file's Write.
var tempWrite func(f *os.File, b []byte) (int, error)

func (t tempFile) Write(b []byte) (int, error) {
	write := tempWrite
	if write == nil {
		write = (*os.File).Write
	}
	n, err := write(t.f, b)
	return n, withoutPath(err)
}

// withoutPath is err less a top-level *PathError or *LinkError, which
// names the temporary file; the cause stays wrapped.
func withoutPath(err error) error {
	switch e := err.(type) {
	case *fs.PathError:
		return e.Err
	case *os.LinkError:
		return e.Err
	}
	return err
}

// syncDir makes a rename in dir durable. Some systems cannot fsync a
// directory; the rename itself has already happened, so only a real I/O
// error is reported.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isSyncUnsupported(err) {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
