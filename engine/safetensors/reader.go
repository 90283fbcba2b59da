package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// maxHeaderBytes bounds the JSON header, as the reference implementation
// does, so a lying length cannot make us parse (or allocate) gigabytes.
const maxHeaderBytes = 100 << 20

// TensorInfo describes one tensor of a file or a set of files.
type TensorInfo struct {
	Name  string
	DType string
	Shape []int
	// File is the path of the file that holds the tensor.
	File string
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

type entry struct {
	info  TensorInfo
	begin int64 // offsets into the data section, checked against it
	end   int64
}

// File is one open safetensors file. Its methods are safe for concurrent use
// until Close.
type File struct {
	path     string
	buf      []byte // the whole file: mapped, or read into memory
	data     []byte // buf after the header
	tensors  map[string]entry
	names    []string
	metadata map[string]string
	release  func() error // unmaps buf; nil once closed
}

// Open maps the file at path and validates its header against the file size.
func Open(path string) (*File, error) {
	buf, release, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := parse(path, buf)
	if err != nil {
		release()
		return nil, err
	}
	f.release = release
	return f, nil
}

// parse checks buf, the complete contents of the file at path, and indexes
// its tensors. It never reads outside buf whatever the header claims.
func parse(path string, buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("safetensors: %s: file is %d bytes, shorter than the 8-byte header length", path, len(buf))
	}
	n := binary.LittleEndian.Uint64(buf[:8])
	if n > uint64(len(buf)-8) {
		return nil, fmt.Errorf("safetensors: %s: header length %d is larger than the %d bytes that follow it (truncated or not a safetensors file)", path, n, len(buf)-8)
	}
	if n > maxHeaderBytes {
		return nil, fmt.Errorf("safetensors: %s: header length %d exceeds the %d-byte limit", path, n, maxHeaderBytes)
	}
	header := buf[8 : 8+n]
	data := buf[8+n:]
	tensors, metadata, err := parseHeader(path, header, int64(len(data)))
	if err != nil {
		return nil, err
	}
	f := &File{path: path, buf: buf, data: data, tensors: tensors, metadata: metadata}
	f.names = make([]string, 0, len(tensors))
	for name := range tensors {
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	return f, nil
}

// rawEntry is one tensor as the header spells it. Dims and offsets are int64
// so negative values are seen and reported rather than failing to decode.
type rawEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// parseHeader decodes and checks a JSON header for a data section of dataLen
// bytes: known dtypes, sizes that match the shapes, offsets inside the data
// section and no two tensors sharing bytes.
func parseHeader(path string, header []byte, dataLen int64) (map[string]entry, map[string]string, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: %s: header: %s", path, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fail("not valid JSON at byte %d: %v", dec.InputOffset(), err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fail("want a JSON object, found %v", tok)
	}
	tensors := map[string]entry{}
	var metadata map[string]string
	seenMetadata := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fail("not valid JSON at byte %d: %v", dec.InputOffset(), err)
		}
		name, ok := tok.(string)
		if !ok { // the decoder only yields string keys inside an object
			return nil, nil, fail("want a key, found %v", tok)
		}
		if name == "__metadata__" {
			if seenMetadata {
				return nil, nil, fail("__metadata__ appears twice")
			}
			seenMetadata = true
			if err := dec.Decode(&metadata); err != nil {
				return nil, nil, fail("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		if _, dup := tensors[name]; dup {
			return nil, nil, fail("tensor %q appears twice", name)
		}
		var raw rawEntry
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fail("tensor %q: want {dtype, shape, data_offsets} with integer shape and offsets: %v", name, err)
		}
		e, err := checkEntry(raw, dataLen)
		if err != nil {
			return nil, nil, fail("tensor %q: %v", name, err)
		}
		e.info.Name = name
		e.info.File = path
		tensors[name] = e
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fail("not valid JSON: %v", err)
	}
	// Writers pad the header with spaces; anything else after the object
	// means the length or the JSON is wrong.
	rest := header[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n\x00")) != 0 {
		return nil, nil, fail("unexpected bytes after the JSON object at offset %d", dec.InputOffset())
	}
	if err := checkOverlaps(tensors); err != nil {
		return nil, nil, fail("%v", err)
	}
	return tensors, metadata, nil
}

func checkEntry(raw rawEntry, dataLen int64) (entry, error) {
	size, ok := dtypeSizes[raw.DType]
	if !ok {
		return entry{}, fmt.Errorf("unknown dtype %q (known: %s)", raw.DType, knownDTypes())
	}
	if raw.Shape == nil {
		return entry{}, errors.New("missing shape")
	}
	count, err := numElements(raw.Shape)
	if err != nil {
		return entry{}, err
	}
	if len(raw.DataOffsets) != 2 {
		return entry{}, fmt.Errorf("data_offsets must be [begin, end], found %v", raw.DataOffsets)
	}
	begin, end := raw.DataOffsets[0], raw.DataOffsets[1]
	if begin < 0 || end < begin {
		return entry{}, fmt.Errorf("data_offsets [%d, %d] are not an increasing pair of non-negative offsets", begin, end)
	}
	if end > dataLen {
		return entry{}, fmt.Errorf("data_offsets [%d, %d] run past the end of the data section (%d bytes): file truncated or header wrong", begin, end, dataLen)
	}
	if count > math.MaxInt64/int64(size) || count*int64(size) != end-begin {
		return entry{}, fmt.Errorf("shape %v of %s needs %d elements of %d bytes, but data_offsets [%d, %d] hold %d bytes", raw.Shape, raw.DType, count, size, begin, end, end-begin)
	}
	shape := make([]int, len(raw.Shape))
	for i, d := range raw.Shape {
		if int64(int(d)) != d {
			return entry{}, fmt.Errorf("shape dim %d (%d) does not fit in an int", i, d)
		}
		shape[i] = int(d)
	}
	return entry{info: TensorInfo{DType: raw.DType, Shape: shape}, begin: begin, end: end}, nil
}

// checkOverlaps refuses two tensors whose byte ranges intersect. Empty
// tensors occupy no bytes and cannot overlap anything.
func checkOverlaps(tensors map[string]entry) error {
	list := make([]entry, 0, len(tensors))
	for _, e := range tensors {
		if e.end > e.begin {
			list = append(list, e)
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].begin != list[j].begin {
			return list[i].begin < list[j].begin
		}
		return list[i].info.Name < list[j].info.Name
	})
	for i := 1; i < len(list); i++ {
		prev, cur := list[i-1], list[i]
		if cur.begin < prev.end {
			return fmt.Errorf("tensor %q at data_offsets [%d, %d] overlaps tensor %q at [%d, %d]",
				cur.info.Name, cur.begin, cur.end, prev.info.Name, prev.begin, prev.end)
		}
	}
	return nil
}

// Path is the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Names lists the tensors, sorted.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Info describes a tensor; false if the file has no tensor of that name.
func (f *File) Info(name string) (TensorInfo, bool) {
	e, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	info := e.info
	info.Shape = slices.Clone(info.Shape) // keeps a scalar's shape non-nil
	return info, true
}

// Metadata returns a copy of the header's "__metadata__" map (empty if none).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Raw returns the tensor's bytes, little-endian as stored. The slice aliases
// the mapped file: it is valid until Close and must not be written to.
func (f *File) Raw(name string) ([]byte, error) {
	e, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	return f.data[e.begin:e.end:e.end], nil
}

// Float32 returns a new slice holding the tensor converted to float32. F32,
// F16 and BF16 convert exactly; other dtypes are an error.
func (f *File) Float32(name string) ([]float32, error) {
	e, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	b := f.data[e.begin:e.end]
	switch e.info.DType {
	case "F32":
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case "BF16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	case "F16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("safetensors: %s: tensor %q is %s, not a float type (F32, F16, BF16)", f.path, name, e.info.DType)
}

// Int32 returns a new slice holding the tensor as int32. I32 is copied; I64
// is narrowed, an element outside the int32 range being an error.
func (f *File) Int32(name string) ([]int32, error) {
	e, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	b := f.data[e.begin:e.end]
	switch e.info.DType {
	case "I32":
		out := make([]int32, len(b)/4)
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case "I64":
		out := make([]int32, len(b)/8)
		for i := range out {
			v := int64(binary.LittleEndian.Uint64(b[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("safetensors: %s: tensor %q element %d (%d) does not fit in int32", f.path, name, i, v)
			}
			out[i] = int32(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("safetensors: %s: tensor %q is %s, not an integer type (I32, I64)", f.path, name, e.info.DType)
}

func (f *File) lookup(name string) (entry, error) {
	if f.release == nil && f.buf == nil {
		return entry{}, fmt.Errorf("safetensors: %s: read of tensor %q after Close", f.path, name)
	}
	e, ok := f.tensors[name]
	if !ok {
		return entry{}, fmt.Errorf("safetensors: %s: no tensor %q", f.path, name)
	}
	return e, nil
}

// Close releases the mapping. Slices returned by Raw must not be used after.
func (f *File) Close() error {
	release := f.release
	f.release, f.buf, f.data = nil, nil, nil
	if release == nil {
		return nil
	}
	if err := release(); err != nil {
		return fmt.Errorf("safetensors: %s: unmap: %w", f.path, err)
	}
	return nil
}
