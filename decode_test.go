package jobfleet_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/queue"
)

// messageCases is shared by the decoder test and the schema agreement test:
// every message the decoder accepts, the published schema accepts, and every
// message with a kind is rejected by both.
var messageCases = []struct {
	name string
	json string
	kind error // nil: valid
	// schemaBlind marks what JSON Schema cannot see: a validator reads an
	// object with a member named twice as if it had one.
	schemaBlind bool
}{
	{name: "minimal", json: `{"version":1,"id":"job-1","type":"export"}`},
	{name: "full", json: `{"version":1,"id":"train:2026-11-22.001","type":"train-ranker","params":{"epochs":20,"lr":0.01,"nested":{"a":[1,2]}},"features":{"rows":12000000,"model_params":3.5e8,"upstream_bytes":0},"priority":9}`},
	{name: "integral float version", json: `{"version":1.0,"id":"a","type":"b"}`},
	{name: "integral float priority", json: `{"version":1,"id":"a","type":"b","priority":3.0}`},
	{name: "empty features and params", json: `{"version":1,"id":"a","type":"b","features":{},"params":{}}`},
	{name: "leading whitespace", json: " \n{\"version\":1,\"id\":\"a\",\"type\":\"b\"}\n"},

	{name: "not JSON", json: `{"version":1,`, kind: jobfleet.ErrMalformed},
	{name: "array", json: `[{"version":1,"id":"a","type":"b"}]`, kind: jobfleet.ErrMalformed},
	{name: "null", json: `null`, kind: jobfleet.ErrMalformed},
	{name: "string", json: `"job"`, kind: jobfleet.ErrMalformed},
	{name: "missing version", json: `{"id":"a","type":"b"}`, kind: jobfleet.ErrMissingField},
	{name: "version 2", json: `{"version":2,"id":"a","type":"b"}`, kind: jobfleet.ErrUnsupportedVersion},
	{name: "version 0", json: `{"version":0,"id":"a","type":"b"}`, kind: jobfleet.ErrUnsupportedVersion},
	{name: "version string", json: `{"version":"1","id":"a","type":"b"}`, kind: jobfleet.ErrWrongType},
	{name: "missing id", json: `{"version":1,"type":"b"}`, kind: jobfleet.ErrMissingField},
	{name: "empty id", json: `{"version":1,"id":"","type":"b"}`, kind: jobfleet.ErrMissingField},
	{name: "missing type", json: `{"version":1,"id":"a"}`, kind: jobfleet.ErrMissingField},
	{name: "unknown top-level field", json: `{"version":1,"id":"a","type":"b","image":"evil:latest"}`, kind: jobfleet.ErrUnknownField},
	{name: "history", json: `{"version":1,"id":"a","type":"b","history":[{"attempt":1,"reason":"interrupted"},{"attempt":2,"reason":"interrupted"}]}`, kind: jobfleet.ErrReservedField},
	{name: "empty history", json: `{"version":1,"id":"a","type":"b","history":[]}`, kind: jobfleet.ErrReservedField},
	{name: "checkpoint", json: `{"version":1,"id":"a","type":"b","checkpoint":"s3://bucket/jobfleet/a/checkpoint/"}`, kind: jobfleet.ErrReservedField},
	{name: "oom history with a huge allocation", json: `{"version":1,"id":"a","type":"b","history":[{"attempt":1,"reason":"oom","allocated_bytes":1099511627776}]}`, kind: jobfleet.ErrReservedField},
	{name: "duplicate id", json: `{"version":1,"id":"a","id":"b","type":"b"}`, kind: jobfleet.ErrMalformed, schemaBlind: true},
	{name: "duplicate nested key", json: `{"version":1,"id":"a","type":"b","params":{"x":{"k":1,"k":2}}}`, kind: jobfleet.ErrMalformed, schemaBlind: true},
	{name: "duplicate feature", json: `{"version":1,"id":"a","type":"b","features":{"rows":1,"rows":1e12}}`, kind: jobfleet.ErrMalformed, schemaBlind: true}, {name: "id number", json: `{"version":1,"id":7,"type":"b"}`, kind: jobfleet.ErrWrongType},
	{name: "id null", json: `{"version":1,"id":null,"type":"b"}`, kind: jobfleet.ErrWrongType},
	{name: "labels", json: `{"version":1,"id":"a","type":"b","labels":{"team":"search","user":"ana.lópez@example.com","workflow-step":"train.3"}}`},
	{name: "task token", json: `{"version":1,"id":"a","type":"b","task_token":"AQCEAAAAKgAAAAMAAAAAAAAAAeMBHCNO+m3q/4Lp=="}`},
	{name: "task token with a space", json: `{"version":1,"id":"a","type":"b","task_token":"AQ CE"}`, kind: jobfleet.ErrInvalidValue},
	{name: "empty task token", json: `{"version":1,"id":"a","type":"b","task_token":""}`, kind: jobfleet.ErrInvalidValue},
	{name: "task token too long", json: `{"version":1,"id":"a","type":"b","task_token":"` + strings.Repeat("A", 2049) + `"}`, kind: jobfleet.ErrInvalidValue},
	{name: "task token number", json: `{"version":1,"id":"a","type":"b","task_token":7}`, kind: jobfleet.ErrWrongType},
	{name: "labels array", json: `{"version":1,"id":"a","type":"b","labels":["team"]}`, kind: jobfleet.ErrWrongType},
	{name: "label number", json: `{"version":1,"id":"a","type":"b","labels":{"user":42}}`, kind: jobfleet.ErrWrongType},
	{name: "label key with a slash", json: `{"version":1,"id":"a","type":"b","labels":{"team/x":"a"}}`, kind: jobfleet.ErrInvalidValue},
	{name: "label key ending in a dot", json: `{"version":1,"id":"a","type":"b","labels":{"team.":"a"}}`, kind: jobfleet.ErrInvalidValue},
	{name: "label value with a newline", json: `{"version":1,"id":"a","type":"b","labels":{"team":"a\nb"}}`, kind: jobfleet.ErrInvalidValue},
	{name: "label value of 256 characters", json: `{"version":1,"id":"a","type":"b","labels":{"team":"` + strings.Repeat("é", 256) + `"}}`},
	{name: "label value of 257 characters", json: `{"version":1,"id":"a","type":"b","labels":{"team":"` + strings.Repeat("é", 257) + `"}}`, kind: jobfleet.ErrInvalidValue},
	{name: "17 labels", json: `{"version":1,"id":"a","type":"b","labels":{` + labelMembers(17) + `}}`, kind: jobfleet.ErrInvalidValue},
	{name: "16 labels", json: `{"version":1,"id":"a","type":"b","labels":{` + labelMembers(16) + `}}`},
	{name: "type array", json: `{"version":1,"id":"a","type":["b"]}`, kind: jobfleet.ErrWrongType},
	{name: "params string", json: `{"version":1,"id":"a","type":"b","params":"x=1"}`, kind: jobfleet.ErrWrongType},
	{name: "features array", json: `{"version":1,"id":"a","type":"b","features":[1,2]}`, kind: jobfleet.ErrWrongType},
	{name: "feature string", json: `{"version":1,"id":"a","type":"b","features":{"rows":"10"}}`, kind: jobfleet.ErrWrongType},
	{name: "feature NaN string", json: `{"version":1,"id":"a","type":"b","features":{"rows":"NaN"}}`, kind: jobfleet.ErrWrongType},
	{name: "priority fraction", json: `{"version":1,"id":"a","type":"b","priority":1.5}`, kind: jobfleet.ErrWrongType},
	{name: "negative feature", json: `{"version":1,"id":"a","type":"b","features":{"rows":-1}}`, kind: jobfleet.ErrInvalidFeature},
	{name: "bad feature name", json: `{"version":1,"id":"a","type":"b","features":{"9rows":1}}`, kind: jobfleet.ErrInvalidFeature},
	{name: "id with slash", json: `{"version":1,"id":"../etc/passwd","type":"b"}`, kind: jobfleet.ErrInvalidValue},
	{name: "type upper case", json: `{"version":1,"id":"a","type":"Export"}`, kind: jobfleet.ErrInvalidValue},
	{name: "type too long", json: `{"version":1,"id":"a","type":"` + strings.Repeat("t", 31) + `"}`, kind: jobfleet.ErrInvalidValue},
	{name: "priority too high", json: `{"version":1,"id":"a","type":"b","priority":10}`, kind: jobfleet.ErrInvalidValue},
	{name: "priority negative", json: `{"version":1,"id":"a","type":"b","priority":-1}`, kind: jobfleet.ErrInvalidValue},
}

var allKinds = []error{
	jobfleet.ErrMalformed, jobfleet.ErrTooLarge, jobfleet.ErrUnsupportedVersion, jobfleet.ErrMissingField,
	jobfleet.ErrUnknownField, jobfleet.ErrReservedField, jobfleet.ErrWrongType, jobfleet.ErrInvalidFeature, jobfleet.ErrInvalidValue,
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tt := range messageCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job, err := jobfleet.Decode([]byte(tt.json))
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Decode() error = %v, want a valid job", err)
				}
				if job.Version != jobfleet.Version || job.ID == "" || job.Type == "" {
					t.Fatalf("Decode() = %+v, want version, id and type set", job)
				}
				return
			}
			assertKind(t, err, tt.kind)
		})
	}
}

// assertKind checks that err is a *MessageError of exactly the wanted kind.
func assertKind(t *testing.T, err, want error) {
	t.Helper()
	var msgErr *jobfleet.MessageError
	if !errors.As(err, &msgErr) {
		t.Fatalf("error = %v (%T), want a *jobfleet.MessageError", err, err)
	}
	for _, kind := range allKinds {
		if got := errors.Is(err, kind); got != (kind == want) {
			t.Fatalf("errors.Is(%v, %v) = %v", err, kind, got)
		}
	}
	if !strings.Contains(err.Error(), want.Error()) {
		t.Fatalf("error %q does not name its kind %q", err, want)
	}
}

func TestDecodeFull(t *testing.T) {
	t.Parallel()
	job, err := jobfleet.Decode([]byte(messageCases[1].json))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := job.Features["model_params"], 3.5e8; got != want {
		t.Errorf("features.model_params = %v, want %v", got, want)
	}
	if got, want := string(job.Params), `{"epochs":20,"lr":0.01,"nested":{"a":[1,2]}}`; got != want {
		t.Errorf("params = %s, want %s", got, want)
	}
	if got, want := job.Priority, 9; got != want {
		t.Errorf("priority = %d, want %d", got, want)
	}
	// Encoding and decoding again gives the same job.
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	again, err := jobfleet.Decode(data)
	if err != nil {
		t.Fatalf("decoding an encoded job: %v\n%s", err, data)
	}
	data2, _ := json.Marshal(again)
	if !bytes.Equal(data, data2) {
		t.Errorf("round trip changed the job:\n%s\n%s", data, data2)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat("x", jobfleet.MaxMessageBytes)
	_, err := jobfleet.Decode([]byte(`{"version":1,"id":"a","type":"b","params":{"pad":"` + pad + `"}}`))
	assertKind(t, err, jobfleet.ErrTooLarge)
}

// TestLargestMessageLeavesRoomForAttributes checks that the largest job
// message the decoder accepts still fits in one SQS message once jobfleet
// adds the attributes it forwards jobs with.
func TestLargestMessageLeavesRoomForAttributes(t *testing.T) {
	t.Parallel()
	head := `{"version":1,"id":"` + strings.Repeat("i", 128) + `","type":"` + strings.Repeat("t", 30) + `","params":{"pad":"`
	pad := strings.Repeat("x", jobfleet.MaxMessageBytes-len(head)-3)
	body := head + pad + `"}}`
	if len(body) != jobfleet.MaxMessageBytes {
		t.Fatalf("built %d bytes, want %d", len(body), jobfleet.MaxMessageBytes)
	}
	if _, err := jobfleet.Decode([]byte(body)); err != nil {
		t.Fatalf("the largest valid message: %v", err)
	}
	fwd := queue.ForwardMessage(body, strings.Repeat("t", 30), strings.Repeat("r", 128), 25)
	fwd.Attributes["jobfleet-memory"] = queue.NumberAttribute(math.MaxInt64)
	fwd.Attributes["jobfleet-predicted"] = queue.NumberAttribute(math.MaxInt64)
	if got := queue.Size(fwd); got > queue.MaxMessageBytes {
		t.Errorf("forwarded, the largest valid message takes %d bytes, more than SQS's %d", got, queue.MaxMessageBytes)
	}
}

func TestDecodeReportsField(t *testing.T) {
	t.Parallel()
	_, err := jobfleet.Decode([]byte(`{"version":1,"id":"a","type":"b","features":{"rows":1,"bytes":"lots"}}`))
	var msgErr *jobfleet.MessageError
	if !errors.As(err, &msgErr) || msgErr.Field != "features.bytes" {
		t.Fatalf("error = %v, want one naming features.bytes", err)
	}
	_, err = jobfleet.Decode([]byte(`{"version":1,"id":"a","type":"b","params":{"x":[{"k":1,"k":2}]}}`))
	if !errors.As(err, &msgErr) || msgErr.Field != "params.x[0].k" {
		t.Fatalf("error = %v, want one naming params.x[0].k", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() jobfleet.Job {
		return jobfleet.Job{Version: jobfleet.Version, ID: "a", Type: "b", Features: map[string]float64{"rows": 1}}
	}
	tests := []struct {
		name   string
		mutate func(*jobfleet.Job)
		kind   error
	}{
		{name: "valid", mutate: func(*jobfleet.Job) {}},
		{name: "NaN feature", mutate: func(j *jobfleet.Job) { j.Features["rows"] = math.NaN() }, kind: jobfleet.ErrInvalidFeature},
		{name: "infinite feature", mutate: func(j *jobfleet.Job) { j.Features["rows"] = math.Inf(1) }, kind: jobfleet.ErrInvalidFeature},
		{name: "negative feature", mutate: func(j *jobfleet.Job) { j.Features["rows"] = -0.5 }, kind: jobfleet.ErrInvalidFeature},
		{name: "zero version", mutate: func(j *jobfleet.Job) { j.Version = 0 }, kind: jobfleet.ErrUnsupportedVersion},
		{name: "no id", mutate: func(j *jobfleet.Job) { j.ID = "" }, kind: jobfleet.ErrMissingField},
		{name: "no type", mutate: func(j *jobfleet.Job) { j.Type = "" }, kind: jobfleet.ErrMissingField},
		{name: "params not an object", mutate: func(j *jobfleet.Job) { j.Params = json.RawMessage(`[1]`) }, kind: jobfleet.ErrWrongType},
		{name: "params not JSON", mutate: func(j *jobfleet.Job) { j.Params = json.RawMessage(`{"a":`) }, kind: jobfleet.ErrWrongType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := valid()
			tt.mutate(&job)
			err := job.Validate()
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			assertKind(t, err, tt.kind)
		})
	}
}

// TestSchemaAgreesWithDecoder checks the published JSON Schema against the
// decoder on the same messages.
func TestSchemaAgreesWithDecoder(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t, "job-message.schema.json")
	for _, tt := range messageCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(tt.json))
			if err != nil {
				if tt.kind != jobfleet.ErrMalformed {
					t.Fatalf("not JSON: %v", err)
				}
				return // neither side can read it
			}
			err = schema.Validate(doc)
			if tt.schemaBlind {
				if err != nil {
					t.Errorf("schema rejects %s; its test case says the schema cannot see the problem", tt.name)
				}
				return
			}
			if tt.kind == nil && err != nil {
				t.Errorf("schema rejects a message the decoder accepts: %v", err)
			}
			if tt.kind != nil && err == nil {
				t.Errorf("schema accepts a message the decoder rejects with %v", tt.kind)
			}
		})
	}
}

// compileSchema compiles one of the JSON Schemas published in docs/.
func compileSchema(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return schema
}

func FuzzDecode(f *testing.F) {
	for _, tt := range messageCases {
		f.Add([]byte(tt.json))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := jobfleet.Decode(data)
		if err != nil {
			var msgErr *jobfleet.MessageError
			if !errors.As(err, &msgErr) {
				t.Fatalf("Decode error %v is not a *MessageError", err)
			}
			return
		}
		// Whatever Decode accepts is valid and survives a round trip.
		if err := job.Validate(); err != nil {
			t.Fatalf("Decode accepted a job that Validate rejects: %v", err)
		}
		data2, err := json.Marshal(job)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if _, err := jobfleet.Decode(data2); err != nil {
			t.Fatalf("re-decoding %s: %v", data2, err)
		}
	})
}

// labelMembers is n label members, "l0":"v", "l1":"v", ...
func labelMembers(n int) string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf(`"l%d":"v"`, i)
	}
	return strings.Join(members, ",")
}

func TestDecodeRunRecordChecksMemory(t *testing.T) {
	t.Parallel()
	const head = `{"job_id":"j","type":"export","attempt":1,"outcome":"succeeded","ended_at":"2026-11-30T12:00:00Z"`
	rec, err := jobfleet.DecodeRunRecord([]byte(head + `,"allocated_bytes":2147483648,"peak_bytes":1073741824,"predicted_bytes":1610612736}`))
	if err != nil || rec.PredictedBytes != 1610612736 {
		t.Fatalf("a record with the model's size: %+v, %v", rec, err)
	}
	for _, field := range []string{"allocated_bytes", "peak_bytes", "predicted_bytes"} {
		if _, err := jobfleet.DecodeRunRecord([]byte(head + `,"` + field + `":-1}`)); err == nil || !strings.Contains(err.Error(), "negative memory") {
			t.Errorf("negative %s: error %v", field, err)
		}
	}
}
