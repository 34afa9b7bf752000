package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Account is the AWS account ID of the SQS emulator's queues, the one in
// their URLs. The recorder puts it in the ARN of a call that names no
// queue URL and no account, such as CreateQueue or ListQueues.
const Account = "000000000000"

// AWSCall is one request as IAM authorizes it.
type AWSCall struct {
	// AccessKeyID is the caller's key, from the SigV4 credential scope.
	AccessKeyID string
	// Action is the IAM action, such as "sqs:SendMessage" or "s3:GetObject".
	Action string
	// Resource is the ARN acted on: arn:aws:sqs:<region>:<account>:<queue>,
	// arn:aws:s3:::<bucket>/<key>, arn:aws:s3:::<bucket> for a bucket, or
	// "*" for s3:ListAllMyBuckets.
	Resource string
	// Context holds the condition keys IAM evaluates the call with that
	// policies scope by: s3:prefix of an s3:ListBucket.
	Context map[string][]string
}

func (c AWSCall) String() string {
	s := c.AccessKeyID + " " + c.Action + " " + c.Resource
	for _, k := range slices.Sorted(maps.Keys(c.Context)) {
		s += " " + k + "=" + strings.Join(c.Context[k], ",")
	}
	return s
}

// AWSRecorder is a reverse proxy in front of the SQS emulator or the S3
// server that records every call made through it as IAM authorizes it, so
// that a test can check that a component needs no more than its policy
// grants. It tells the services apart by the SigV4 credential scope, so one
// recorder can front either.
//
// It forwards requests unchanged, Host header and body included, so their
// signatures still hold. It reads a request body only to map it, and only
// when the body is small by the API's own limits: an SQS request, or the key
// list of an S3 DeleteObjects (decoding aws-chunked framing). Every other
// body, such as an object upload, streams through.
//
// A call is recorded once the upstream has answered it, with any status.
// A request that cannot be mapped is listed by Unknown instead, whether or
// not the upstream answered it: unsigned requests, SigV4a or SigV2
// signatures, actions and S3 subresources the mapping does not know, and S3
// requests whose host name could name a bucket (virtual-hosted style): S3
// clients must use path-style addressing, to an IP address or localhost.
//
// The mapping follows the Service Authorization Reference and the API
// documentation's permission notes. It does not model what depends on state
// the request does not carry: KMS permissions for encrypted queues and
// objects, or s3:GetObjectTagging for a copy whose source has tags.
type AWSRecorder struct {
	url    string
	target *url.URL
	proxy  *httputil.ReverseProxy
	server *http.Server

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	calls    []AWSCall
	unknown  []string
}

// RecordAWS starts a recorder on a loopback port in front of upstream, the
// URL of the SQS emulator or the S3 server, closed when the test ends.
func RecordAWS(t testing.TB, upstream string) *AWSRecorder {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" || strings.Trim(target.Path, "/") != "" {
		t.Fatalf("recording AWS calls: upstream %q is not a URL such as http://127.0.0.1:4566", upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("recording AWS calls: %v", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	// Pass Accept-Encoding and response bodies through as they are.
	transport.DisableCompression = true
	r := &AWSRecorder{url: "http://" + ln.Addr().String(), target: target}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:        r.rewrite,
		Transport:      transport,
		ModifyResponse: r.answered,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "awsrecord: "+err.Error(), http.StatusBadGateway)
		},
	}
	r.server = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = r.server.Serve(ln)
	}()
	t.Cleanup(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		// Closing the connections cancels the requests in flight.
		_ = r.server.Close()
		<-served
		r.inflight.Wait()
		transport.CloseIdleConnections()
	})
	return r
}

// URL is the recorder's endpoint, for a client's BaseEndpoint or
// AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_S3.
func (r *AWSRecorder) URL() string { return r.url }

// Calls returns the calls recorded so far, in the order they were answered.
func (r *AWSRecorder) Calls() []AWSCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Unknown returns the requests the recorder could not map to IAM actions,
// each as "METHOD /path?query [X-Amz-Target]: reason". A least-privilege
// test must fail when there are any: an unmapped call is a call whose
// permission it did not check.
func (r *AWSRecorder) Unknown() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.unknown)
}

type pendingKey struct{}

// ServeHTTP maps the request, then forwards it; the calls are recorded when
// the upstream answers.
func (r *AWSRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		http.Error(w, "awsrecord: closed", http.StatusServiceUnavailable)
		return
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	defer r.inflight.Done()

	calls, err := mapAWSRequest(req)
	if err != nil {
		what := req.Method + " " + req.URL.RequestURI()
		if target := req.Header.Get("X-Amz-Target"); target != "" {
			what += " " + target
		}
		r.mu.Lock()
		r.unknown = append(r.unknown, what+": "+err.Error())
		r.mu.Unlock()
	}
	r.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), pendingKey{}, calls)))
}

// rewrite points the request at the upstream and keeps its Host header,
// which the client signed.
func (r *AWSRecorder) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = r.target.Scheme
	pr.Out.URL.Host = r.target.Host
	pr.Out.Host = pr.In.Host
}

// answered records the calls of a request the upstream answered. S3
// answers a read of a missing object with 404 only to a caller allowed to
// list its key (s3:ListBucket with s3:prefix the key), and with 403 to any
// other: code that relies on "not found" makes that call too.
func (r *AWSRecorder) answered(resp *http.Response) error {
	calls, _ := resp.Request.Context().Value(pendingKey{}).([]AWSCall)
	if resp.StatusCode == http.StatusNotFound && len(calls) == 1 && (calls[0].Action == "s3:GetObject" || calls[0].Action == "s3:GetObjectVersion") {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(calls[0].Resource, "arn:aws:s3:::"), "/")
		calls = append(slices.Clone(calls), AWSCall{AccessKeyID: calls[0].AccessKeyID, Action: "s3:ListBucket",
			Resource: "arn:aws:s3:::" + bucket, Context: map[string][]string{"s3:prefix": {key}}})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, calls...)
	return nil
}

// maxMappedBody bounds the bodies read for mapping: an SQS request (at most
// 1 MiB of messages, more once JSON-escaped) or a DeleteObjects key list (at
// most 1,000 keys of 1 KiB).
const maxMappedBody = 8 << 20

// credential is a SigV4 signature's credential scope.
type credential struct {
	keyID, region, service string
}

// mapAWSRequest returns the IAM calls a request makes.
func mapAWSRequest(req *http.Request) ([]AWSCall, error) {
	cred, err := parseCredential(req)
	if err != nil {
		return nil, err
	}
	switch cred.service {
	case "sqs":
		return mapSQS(req, cred)
	case "s3":
		return mapS3(req, cred)
	default:
		return nil, fmt.Errorf("signed for service %q, not sqs or s3", cred.service)
	}
}

// parseCredential reads the credential scope of a SigV4 Authorization
// header, or of a presigned URL's X-Amz-Credential.
func parseCredential(req *http.Request) (credential, error) {
	var scope string
	if auth := req.Header.Get("Authorization"); auth != "" {
		params, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
		if !ok {
			algorithm, _, _ := strings.Cut(auth, " ")
			return credential{}, fmt.Errorf("signed with %q, not SigV4 (AWS4-HMAC-SHA256)", algorithm)
		}
		for p := range strings.SplitSeq(params, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "Credential="); ok {
				scope = v
			}
		}
	} else if q := req.URL.Query(); q.Has("X-Amz-Credential") {
		if alg := q.Get("X-Amz-Algorithm"); alg != "AWS4-HMAC-SHA256" {
			return credential{}, fmt.Errorf("presigned with %q, not SigV4 (AWS4-HMAC-SHA256)", alg)
		}
		scope = q.Get("X-Amz-Credential")
	} else {
		return credential{}, errors.New("unsigned request")
	}
	parts := strings.Split(scope, "/")
	if len(parts) != 5 || parts[0] == "" || parts[2] == "" || parts[4] != "aws4_request" {
		return credential{}, fmt.Errorf("credential scope %q is not AKID/date/region/service/aws4_request", scope)
	}
	return credential{keyID: parts[0], region: parts[2], service: parts[3]}, nil
}

// readBody reads up to limit bytes of the request's body and puts them back
// in front of the rest, so the body is forwarded unchanged.
func readBody(req *http.Request, limit int64) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	req.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(data), req.Body), req.Body}
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	return data, nil
}

// sqsQueueActions are the SQS operations on one queue, named by its URL,
// with the IAM action that authorizes each.
var sqsQueueActions = map[string]string{
	"AddPermission":                "sqs:AddPermission",
	"ChangeMessageVisibility":      "sqs:ChangeMessageVisibility",
	"ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
	"DeleteMessage":                "sqs:DeleteMessage",
	"DeleteMessageBatch":           "sqs:DeleteMessage",
	"DeleteQueue":                  "sqs:DeleteQueue",
	"GetQueueAttributes":           "sqs:GetQueueAttributes",
	"ListDeadLetterSourceQueues":   "sqs:ListDeadLetterSourceQueues",
	"ListQueueTags":                "sqs:ListQueueTags",
	"PurgeQueue":                   "sqs:PurgeQueue",
	"ReceiveMessage":               "sqs:ReceiveMessage",
	"RemovePermission":             "sqs:RemovePermission",
	"SendMessage":                  "sqs:SendMessage",
	"SendMessageBatch":             "sqs:SendMessage",
	"SetQueueAttributes":           "sqs:SetQueueAttributes",
	"TagQueue":                     "sqs:TagQueue",
	"UntagQueue":                   "sqs:UntagQueue",
}

// sqsParams are the request parameters that name what an SQS call acts on.
type sqsParams struct {
	QueueURL   string `json:"QueueUrl"`
	QueueName  string `json:"QueueName"`
	QueueOwner string `json:"QueueOwnerAWSAccountId"`
	SourceARN  string `json:"SourceArn"`
}

// mapSQS maps an SQS request in the JSON protocol (X-Amz-Target) or the
// query protocol (Action=..., in a form body or the URL's query).
func mapSQS(req *http.Request, cred credential) ([]AWSCall, error) {
	var op string
	var p sqsParams
	if target := req.Header.Get("X-Amz-Target"); target != "" {
		var ok bool
		if op, ok = strings.CutPrefix(target, "AmazonSQS."); !ok {
			return nil, fmt.Errorf("X-Amz-Target %q is not an SQS operation", target)
		}
		body, err := readBody(req, maxMappedBody)
		if err != nil {
			return nil, err
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &p); err != nil {
				return nil, fmt.Errorf("decoding the JSON body of %s: %w", op, err)
			}
		}
	} else {
		params := req.URL.Query()
		if ct := req.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			body, err := readBody(req, maxMappedBody)
			if err != nil {
				return nil, err
			}
			form, err := url.ParseQuery(string(body))
			if err != nil {
				return nil, fmt.Errorf("decoding the form body: %w", err)
			}
			for k, v := range form {
				params[k] = append(params[k], v...)
			}
		}
		op = params.Get("Action")
		if op == "" {
			return nil, errors.New("neither an X-Amz-Target header nor an Action parameter")
		}
		p = sqsParams{
			QueueURL:   params.Get("QueueUrl"),
			QueueName:  params.Get("QueueName"),
			QueueOwner: params.Get("QueueOwnerAWSAccountId"),
			SourceARN:  params.Get("SourceArn"),
		}
		// The query protocol sends a queue's calls to its URL.
		if p.QueueURL == "" && strings.Trim(req.URL.Path, "/") != "" {
			p.QueueURL = req.URL.Path
		}
	}
	call := AWSCall{AccessKeyID: cred.keyID, Action: "sqs:" + op}
	switch op {
	case "CreateQueue", "GetQueueUrl":
		if p.QueueName == "" {
			return nil, fmt.Errorf("%s without a QueueName", op)
		}
		account := Account
		if p.QueueOwner != "" {
			account = p.QueueOwner
		}
		call.Resource = sqsARN(cred.region, account, p.QueueName)
	case "ListQueues":
		call.Resource = sqsARN(cred.region, Account, "*")
	case "StartMessageMoveTask", "ListMessageMoveTasks":
		if !strings.HasPrefix(p.SourceARN, "arn:aws:sqs:") {
			return nil, fmt.Errorf("%s with SourceArn %q, not a queue ARN", op, p.SourceARN)
		}
		call.Resource = p.SourceARN
	default:
		action, ok := sqsQueueActions[op]
		if !ok {
			return nil, fmt.Errorf("no IAM mapping for SQS operation %q", op)
		}
		account, name, err := parseQueueURL(p.QueueURL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		call.Action, call.Resource = action, sqsARN(cred.region, account, name)
	}
	return []AWSCall{call}, nil
}

func sqsARN(region, account, name string) string {
	return "arn:aws:sqs:" + region + ":" + account + ":" + name
}

// parseQueueURL returns the account and name in a queue URL's path,
// /<account>/<name>.
func parseQueueURL(queueURL string) (account, name string, err error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return "", "", fmt.Errorf("parsing queue URL %q: %w", queueURL, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("queue URL %q is not .../<account>/<name>", queueURL)
	}
	return parts[0], parts[1], nil
}

// s3Ignored are query parameters that do not select an S3 operation: list
// and part options, and the SDK's x-id.
var s3Ignored = map[string]bool{
	"x-id": true, "versionId": true, "partNumber": true,
	"list-type": true, "prefix": true, "delimiter": true, "marker": true, "max-keys": true,
	"continuation-token": true, "start-after": true, "encoding-type": true, "fetch-owner": true,
	"key-marker": true, "version-id-marker": true, "upload-id-marker": true, "max-uploads": true,
	"max-parts": true, "part-number-marker": true, "max-buckets": true, "bucket-region": true,
}

// s3Subresources are the query parameters that select an S3 operation,
// mapped or not: a request with one the tables below lack is unknown.
var s3Subresources = map[string]bool{
	"accelerate": true, "acl": true, "analytics": true, "attributes": true, "cors": true,
	"delete": true, "encryption": true, "intelligent-tiering": true, "inventory": true,
	"legal-hold": true, "lifecycle": true, "location": true, "logging": true, "metrics": true,
	"notification": true, "object-lock": true, "ownershipControls": true, "policy": true,
	"policyStatus": true, "publicAccessBlock": true, "replication": true, "requestPayment": true,
	"restore": true, "retention": true, "select": true, "tagging": true, "torrent": true,
	"uploadId": true, "uploads": true, "versioning": true, "versions": true, "website": true,
}

type s3Op struct{ method, sub string }

// s3BucketActions map the operations on a bucket to IAM actions.
var s3BucketActions = map[s3Op]string{
	{"GET", ""}:             "s3:ListBucket",
	{"HEAD", ""}:            "s3:ListBucket",
	{"PUT", ""}:             "s3:CreateBucket",
	{"DELETE", ""}:          "s3:DeleteBucket",
	{"GET", "versions"}:     "s3:ListBucketVersions",
	{"GET", "uploads"}:      "s3:ListBucketMultipartUploads",
	{"GET", "location"}:     "s3:GetBucketLocation",
	{"GET", "versioning"}:   "s3:GetBucketVersioning",
	{"PUT", "versioning"}:   "s3:PutBucketVersioning",
	{"GET", "tagging"}:      "s3:GetBucketTagging",
	{"PUT", "tagging"}:      "s3:PutBucketTagging",
	{"DELETE", "tagging"}:   "s3:PutBucketTagging",
	{"GET", "policy"}:       "s3:GetBucketPolicy",
	{"PUT", "policy"}:       "s3:PutBucketPolicy",
	{"DELETE", "policy"}:    "s3:DeleteBucketPolicy",
	{"GET", "lifecycle"}:    "s3:GetLifecycleConfiguration",
	{"PUT", "lifecycle"}:    "s3:PutLifecycleConfiguration",
	{"DELETE", "lifecycle"}: "s3:PutLifecycleConfiguration",
	{"GET", "acl"}:          "s3:GetBucketAcl",
	{"PUT", "acl"}:          "s3:PutBucketAcl",
}

// s3ObjectAction is the IAM action of an operation on an object, without
// and with a versionId ("" where the operation takes none).
type s3ObjectAction struct{ current, version string }

// s3ObjectActions map the operations on an object to IAM actions.
var s3ObjectActions = map[s3Op]s3ObjectAction{
	{"GET", ""}:            {"s3:GetObject", "s3:GetObjectVersion"},
	{"HEAD", ""}:           {"s3:GetObject", "s3:GetObjectVersion"},
	{"PUT", ""}:            {"s3:PutObject", ""},
	{"DELETE", ""}:         {"s3:DeleteObject", "s3:DeleteObjectVersion"},
	{"GET", "tagging"}:     {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
	{"PUT", "tagging"}:     {"s3:PutObjectTagging", "s3:PutObjectVersionTagging"},
	{"DELETE", "tagging"}:  {"s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"},
	{"GET", "acl"}:         {"s3:GetObjectAcl", "s3:GetObjectVersionAcl"},
	{"PUT", "acl"}:         {"s3:PutObjectAcl", "s3:PutObjectVersionAcl"},
	{"POST", "uploads"}:    {"s3:PutObject", ""},                // CreateMultipartUpload
	{"PUT", "uploadId"}:    {"s3:PutObject", ""},                // UploadPart, UploadPartCopy
	{"POST", "uploadId"}:   {"s3:PutObject", ""},                // CompleteMultipartUpload
	{"GET", "uploadId"}:    {"s3:ListMultipartUploadParts", ""}, // ListParts
	{"DELETE", "uploadId"}: {"s3:AbortMultipartUpload", ""},     // AbortMultipartUpload
}

// mapS3 maps a path-style S3 request: /<bucket> or /<bucket>/<key>.
func mapS3(req *http.Request, cred credential) ([]AWSCall, error) {
	if virtualHosted(req.Host) {
		return nil, fmt.Errorf("host %q may name a bucket: address S3 path-style, through an IP address or localhost", req.Host)
	}
	query := req.URL.Query()
	var sub string
	for _, k := range slices.Sorted(maps.Keys(query)) {
		switch {
		case s3Ignored[k], strings.HasPrefix(strings.ToLower(k), "x-amz-"), strings.HasPrefix(k, "response-"):
		case s3Subresources[k]:
			if sub != "" {
				return nil, fmt.Errorf("two S3 subresources, %s and %s", sub, k)
			}
			sub = k
		default:
			return nil, fmt.Errorf("unknown S3 query parameter %q", k)
		}
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	op := s3Op{req.Method, sub}
	call := func(action, resource string) AWSCall {
		return AWSCall{AccessKeyID: cred.keyID, Action: action, Resource: resource}
	}
	switch {
	case bucket == "":
		if op != (s3Op{"GET", ""}) {
			return nil, errors.New("no IAM mapping for this S3 service operation")
		}
		return []AWSCall{call("s3:ListAllMyBuckets", "*")}, nil
	case key == "" && op == s3Op{"POST", "delete"}:
		return mapDeleteObjects(req, bucket, call)
	case key == "":
		action, ok := s3BucketActions[op]
		if !ok {
			return nil, fmt.Errorf("no IAM mapping for S3 bucket operation %s ?%s", op.method, op.sub)
		}
		c := call(action, "arn:aws:s3:::"+bucket)
		if (action == "s3:ListBucket" || action == "s3:ListBucketVersions") && query.Has("prefix") {
			c.Context = map[string][]string{"s3:prefix": {query.Get("prefix")}}
		}
		return []AWSCall{c}, nil
	}
	actions, ok := s3ObjectActions[op]
	if !ok {
		return nil, fmt.Errorf("no IAM mapping for S3 object operation %s ?%s", op.method, op.sub)
	}
	action := actions.current
	if query.Has("versionId") {
		if action = actions.version; action == "" {
			return nil, fmt.Errorf("no IAM mapping for S3 object operation %s ?%s with a versionId", op.method, op.sub)
		}
	}
	object := "arn:aws:s3:::" + bucket + "/" + key
	calls := []AWSCall{call(action, object)}
	// Writes that set tags or an ACL need those permissions too.
	if op == (s3Op{"PUT", ""}) || op == (s3Op{"POST", "uploads"}) {
		if req.Header.Get("X-Amz-Tagging") != "" {
			calls = append(calls, call("s3:PutObjectTagging", object))
		}
		if hasACLHeader(req.Header) {
			calls = append(calls, call("s3:PutObjectAcl", object))
		}
	}
	// CopyObject and UploadPartCopy read their source.
	if src := req.Header.Get("X-Amz-Copy-Source"); src != "" && (op == s3Op{"PUT", ""} || op == s3Op{"PUT", "uploadId"}) {
		source, versioned, err := parseCopySource(src)
		if err != nil {
			return nil, err
		}
		action := "s3:GetObject"
		if versioned {
			action = "s3:GetObjectVersion"
		}
		calls = append(calls, call(action, "arn:aws:s3:::"+source))
	}
	return calls, nil
}

// virtualHosted reports whether a request's host could name a bucket, as
// in a virtual-hosted-style request to bucket.s3.amazonaws.com: it is a
// name with a dot, not an IP address.
func virtualHosted(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.Contains(host, ".") && net.ParseIP(strings.Trim(host, "[]")) == nil
}

func hasACLHeader(h http.Header) bool {
	for k := range h {
		if k == "X-Amz-Acl" || strings.HasPrefix(k, "X-Amz-Grant-") {
			return true
		}
	}
	return false
}

// parseCopySource returns the bucket/key of an x-amz-copy-source header,
// "[/]bucket/key[?versionId=...]" with the key URL-encoded.
func parseCopySource(src string) (object string, versioned bool, err error) {
	path, query, _ := strings.Cut(src, "?")
	path, err = url.PathUnescape(path)
	if err != nil {
		return "", false, fmt.Errorf("decoding x-amz-copy-source %q: %w", src, err)
	}
	path = strings.TrimPrefix(path, "/")
	if bucket, key, ok := strings.Cut(path, "/"); !ok || bucket == "" || key == "" || strings.HasPrefix(path, "arn:") {
		return "", false, fmt.Errorf("x-amz-copy-source %q is not bucket/key", src)
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fmt.Errorf("decoding x-amz-copy-source %q: %w", src, err)
	}
	return path, values.Has("versionId"), nil
}

// mapDeleteObjects maps a DeleteObjects request to one delete per key.
func mapDeleteObjects(req *http.Request, bucket string, call func(action, resource string) AWSCall) ([]AWSCall, error) {
	body, err := readBody(req, maxMappedBody)
	if err != nil {
		return nil, fmt.Errorf("DeleteObjects: %w", err)
	}
	if strings.Contains(req.Header.Get("Content-Encoding"), "aws-chunked") ||
		strings.HasPrefix(req.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		if body, err = decodeAWSChunked(body); err != nil {
			return nil, fmt.Errorf("DeleteObjects: %w", err)
		}
	}
	var del struct {
		Objects []struct {
			Key       string `xml:"Key"`
			VersionID string `xml:"VersionId"`
		} `xml:"Object"`
	}
	if err := xml.Unmarshal(body, &del); err != nil {
		return nil, fmt.Errorf("DeleteObjects: decoding the key list: %w", err)
	}
	if len(del.Objects) == 0 {
		return nil, errors.New("DeleteObjects without keys")
	}
	calls := make([]AWSCall, len(del.Objects))
	for i, o := range del.Objects {
		action := "s3:DeleteObject"
		if o.VersionID != "" {
			action = "s3:DeleteObjectVersion"
		}
		calls[i] = call(action, "arn:aws:s3:::"+bucket+"/"+o.Key)
	}
	return calls, nil
}

// decodeAWSChunked returns the payload of an aws-chunked body: chunks of
// "<hex size>[;chunk-signature=...]\r\n<data>\r\n", ending with a chunk of
// size zero and optional trailers, which it ignores.
func decodeAWSChunked(body []byte) ([]byte, error) {
	var out []byte
	for {
		header, rest, ok := bytes.Cut(body, []byte("\r\n"))
		if !ok {
			return nil, errors.New("aws-chunked body ends inside a chunk header")
		}
		sizeHex, _, _ := bytes.Cut(header, []byte(";"))
		size, err := strconv.ParseUint(string(sizeHex), 16, 31)
		if err != nil {
			return nil, fmt.Errorf("aws-chunked chunk size %q: %w", sizeHex, err)
		}
		if size == 0 {
			return out, nil
		}
		if uint64(len(rest)) < size+2 || !bytes.Equal(rest[size:size+2], []byte("\r\n")) {
			return nil, fmt.Errorf("aws-chunked chunk of %d bytes is cut short", size)
		}
		out = append(out, rest[:size]...)
		body = rest[size+2:]
	}
}
