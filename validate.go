package jobfleet

import (
	"encoding/json"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

var (
	// IDPattern is what a job id looks like: 1-128 letters, digits, ".", "_",
	// ":" or "-", safe as an S3 key segment and a log field.
	IDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	// TypeNamePattern is what a job type name looks like: a DNS label of at
	// most 30 characters, since it becomes part of queue and Kubernetes
	// object names.
	TypeNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$`)
	// FeatureNamePattern is what a feature name looks like.
	FeatureNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
	// LabelKeyPattern is what a label key looks like: 1-63 letters, digits,
	// '_', '.' or '-', starting and ending with a letter or digit.
	LabelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$`)
	// taskTokenPattern is what a Step Functions task token looks like.
	taskTokenPattern = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// Validate checks the values of a job built in Go, as [Decode] does for a
// decoded one. It returns a [*MessageError].
func (j *Job) Validate() error {
	if j.Version != Version {
		return messageError("version", ErrUnsupportedVersion, "version %d is not supported; this writer produces version %d", j.Version, Version)
	}
	if j.ID == "" {
		return messageError("id", ErrMissingField, "id is required")
	}
	if !IDPattern.MatchString(j.ID) {
		return messageError("id", ErrInvalidValue, "%q: an id is 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", j.ID)
	}
	if j.Type == "" {
		return messageError("type", ErrMissingField, "type is required")
	}
	if !TypeNamePattern.MatchString(j.Type) {
		return messageError("type", ErrInvalidValue, "%q: a type name is 1-30 lower-case letters, digits or '-', starting and ending with a letter or digit", j.Type)
	}
	if len(j.Params) > 0 {
		if !isObject(j.Params) || !json.Valid(j.Params) {
			return messageError("params", ErrWrongType, "params must be a JSON object")
		}
	}
	if err := validateFeatures(j.Features); err != nil {
		return err
	}
	if j.Priority < MinPriority || j.Priority > MaxPriority {
		return messageError("priority", ErrInvalidValue, "%d is outside [%d, %d]", j.Priority, MinPriority, MaxPriority)
	}
	if err := validateLabels(j.Labels); err != nil {
		return err
	}
	if j.TaskToken != "" && (len(j.TaskToken) > MaxTaskTokenChars || !taskTokenPattern.MatchString(j.TaskToken)) {
		return messageError("task_token", ErrInvalidValue, "a task token is 1-%d visible ASCII characters", MaxTaskTokenChars)
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return messageError("labels", ErrInvalidValue, "%d labels, at most %d", len(labels), MaxLabels)
	}
	for _, key := range slices.Sorted(maps.Keys(labels)) {
		if !LabelKeyPattern.MatchString(key) {
			return messageError("labels."+key, ErrInvalidValue, "%q: a label key is 1-63 letters, digits, '_', '.' or '-', starting and ending with a letter or digit", key)
		}
		v := labels[key]
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return messageError("labels."+key, ErrInvalidValue, "a label value is printable UTF-8 text")
		}
		if n := utf8.RuneCountInString(v); n > MaxLabelValueChars {
			return messageError("labels."+key, ErrInvalidValue, "%d characters, at most %d", n, MaxLabelValueChars)
		}
	}
	return nil
}

func validateFeatures(features map[string]float64) error {
	names := make([]string, 0, len(features))
	for name := range features {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := "features." + name
		if !FeatureNamePattern.MatchString(name) {
			return messageError(path, ErrInvalidFeature, "%q: a feature name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or '_'", name)
		}
		switch v := features[name]; {
		case math.IsNaN(v):
			return messageError(path, ErrInvalidFeature, "NaN is not a feature value")
		case math.IsInf(v, 0):
			return messageError(path, ErrInvalidFeature, "%v is not a finite feature value", v)
		case v < 0:
			return messageError(path, ErrInvalidFeature, "%v is negative; features are counts and sizes", v)
		}
	}
	return nil
}
