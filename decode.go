package jobfleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
)

// Decode parses and validates one job message. It is strict: every problem is
// reported as a [*MessageError] whose kind says which rule was broken.
//
// The checks run in a fixed order, so a message with several problems always
// reports the same one: size, JSON syntax (duplicate keys included), version,
// reserved fields, unknown fields, missing fields, field types, then values
// (see [Job.Validate]).
func Decode(data []byte) (*Job, error) {
	if len(data) > MaxMessageBytes {
		return nil, messageError("", ErrTooLarge, "%d bytes, the limit is %d", len(data), MaxMessageBytes)
	}
	top, err := objectFields("", data)
	if err != nil {
		return nil, err
	}
	if err := checkDuplicateKeys(data); err != nil {
		return nil, err
	}
	var job Job
	raw, ok := top["version"]
	if !ok {
		return nil, messageError("version", ErrMissingField, "every job message has a version (%d)", Version)
	}
	if err := decodeVersion(raw, &job.Version); err != nil {
		return nil, err
	}
	for _, name := range ReservedFields {
		if _, ok := top[name]; ok {
			return nil, messageError(name, ErrReservedField, "%s is kept by jobfleet for the reruns it makes; a producer's message must not set it", name)
		}
	}
	err = decodeFields("", top, []field{
		{name: "id", required: true, decode: stringField(&job.ID)},
		{name: "type", required: true, decode: stringField(&job.Type)},
		{name: "params", decode: func(path string, raw json.RawMessage) error {
			if !isObject(raw) {
				return messageError(path, ErrWrongType, "params must be a JSON object")
			}
			job.Params = slices.Clone(raw)
			return nil
		}},
		{name: "features", decode: decodeFeatures(&job.Features)},
		{name: "priority", decode: intField(&job.Priority)},
		{name: "labels", decode: decodeLabels(&job.Labels)},
		{name: "task_token", decode: func(path string, raw json.RawMessage) error {
			if err := stringField(&job.TaskToken)(path, raw); err != nil {
				return err
			}
			if job.TaskToken == "" {
				return messageError(path, ErrInvalidValue, "a task token must not be empty; leave task_token out instead")
			}
			return nil
		}},
		{name: "version", decode: func(string, json.RawMessage) error { return nil }},
	})
	if err != nil {
		return nil, err
	}
	if err := job.Validate(); err != nil {
		return nil, err
	}
	return &job, nil
}

func decodeVersion(raw json.RawMessage, dst *int) error {
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || describe(raw) != "a number" {
		return messageError("version", ErrWrongType, "version must be a number, got %s", describe(raw))
	}
	if v != Version {
		return messageError("version", ErrUnsupportedVersion, "version %s is not supported; this reader understands version %d", raw, Version)
	}
	*dst = Version
	return nil
}

// field describes one member of a JSON object for decodeFields.
type field struct {
	name     string
	required bool
	decode   func(path string, raw json.RawMessage) error
}

// objectFields splits one JSON object into its members, rejecting anything
// that is not exactly one object.
func objectFields(path string, data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, notObject(path, data)
		}
		return nil, messageError(path, ErrMalformed, "%v", err)
	}
	if fields == nil {
		return nil, notObject(path, data)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, messageError(path, ErrMalformed, "unexpected data after the JSON object")
	}
	return fields, nil
}

func notObject(path string, data []byte) error {
	if path == "" {
		return messageError("", ErrMalformed, "a job message is a JSON object, got %s", describe(data))
	}
	return messageError(path, ErrWrongType, "must be an object, got %s", describe(data))
}

// decodeFields decodes the members of an object: unknown members first, then
// missing required ones, then each member in the order given.
func decodeFields(prefix string, members map[string]json.RawMessage, fields []field) error {
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
	}
	var unknown []string
	for name := range members {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return messageError(join(prefix, unknown[0]), ErrUnknownField, "the job message contract has no field %q", unknown[0])
	}
	for _, f := range fields {
		if _, ok := members[f.name]; !ok && f.required {
			return messageError(join(prefix, f.name), ErrMissingField, "%s is required", f.name)
		}
	}
	for _, f := range fields {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		if err := f.decode(join(prefix, f.name), raw); err != nil {
			return err
		}
	}
	return nil
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func stringField(dst *string) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		if isNull(raw) || json.Unmarshal(raw, dst) != nil {
			return messageError(path, ErrWrongType, "must be a string, got %s", describe(raw))
		}
		return nil
	}
}

// intField decodes a JSON number with an integral value. Like JSON Schema's
// "integer", it accepts 3.0 as well as 3.
func intField(dst *int) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		v, err := integer(path, raw, math.MinInt32, math.MaxInt32)
		*dst = int(v)
		return err
	}
}

func integer(path string, raw json.RawMessage, lo, hi int64) (int64, error) {
	var n json.Number
	if describe(raw) != "a number" || json.Unmarshal(raw, &n) != nil {
		return 0, messageError(path, ErrWrongType, "must be an integer, got %s", describe(raw))
	}
	if v, err := n.Int64(); err == nil {
		if v < lo || v > hi {
			return 0, messageError(path, ErrInvalidValue, "%d is outside [%d, %d]", v, lo, hi)
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) {
		return 0, messageError(path, ErrWrongType, "must be an integer, got %s", n)
	}
	if f < float64(lo) || f > float64(hi) {
		return 0, messageError(path, ErrInvalidValue, "%s is outside [%d, %d]", n, lo, hi)
	}
	return int64(f), nil
}

func decodeFeatures(dst *map[string]float64) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		members, err := objectFields(path, raw)
		if err != nil {
			return err
		}
		features := make(map[string]float64, len(members))
		names := make([]string, 0, len(members))
		for name := range members {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			value := members[name]
			var n json.Number
			if describe(value) != "a number" || json.Unmarshal(value, &n) != nil {
				return messageError(join(path, name), ErrWrongType, "a feature is a number, got %s", describe(value))
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return messageError(join(path, name), ErrInvalidFeature, "%s is out of range", n)
			}
			features[name] = f
		}
		*dst = features
		return nil
	}
}

func decodeLabels(dst *map[string]string) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		members, err := objectFields(path, raw)
		if err != nil {
			return err
		}
		labels := make(map[string]string, len(members))
		for _, key := range slices.Sorted(maps.Keys(members)) {
			var v string
			if describe(members[key]) != "a string" || json.Unmarshal(members[key], &v) != nil {
				return messageError(join(path, key), ErrWrongType, "a label value is a string, got %s", describe(members[key]))
			}
			labels[key] = v
		}
		*dst = labels
		return nil
	}
}

// checkDuplicateKeys rejects a document in which an object names a member
// twice, anywhere: readers disagree on which one wins (Go keeps the last,
// others the first), so such a message could mean one job to the dispatcher
// and another to the job. It runs after the document parsed, so its depth
// is bounded by the JSON decoder's.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return scanValue(dec, "")
}

// scanValue reads one JSON value, checking the objects in it.
func scanValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return messageError(path, ErrMalformed, "%v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return messageError(path, ErrMalformed, "%v", err)
			}
			name, _ := tok.(string)
			if seen[name] {
				return messageError(join(path, name), ErrMalformed, "the member %q appears twice in one object", name)
			}
			seen[name] = true
			if err := scanValue(dec, join(path, name)); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := scanValue(dec, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return messageError(path, ErrMalformed, "%v", err)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// describe names the JSON type of a value for error messages.
func describe(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
