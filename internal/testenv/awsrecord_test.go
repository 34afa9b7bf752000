package testenv_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

// awsConfig is the test servers' configuration with the caller's own
// access key, and without retries, so that every call is made once.
func awsConfig(keyID string) aws.Config {
	cfg := testenv.AWSConfig()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(keyID, testenv.SecretKey, "")
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return cfg
}

func sqsClient(endpoint, keyID string) *sqs.Client {
	return sqs.NewFromConfig(awsConfig(keyID), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

func s3Client(endpoint, keyID string) *s3.Client {
	return s3.NewFromConfig(awsConfig(keyID), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}

// checkCalls fails the test unless the recorder holds exactly want.
func checkCalls(t *testing.T, rec *testenv.AWSRecorder, want []testenv.AWSCall) {
	t.Helper()
	got := rec.Calls()
	if callLines(got) != callLines(want) {
		t.Errorf("recorded calls:\n%s\nwant:\n%s", callLines(got), callLines(want))
	}
}

func callLines(calls []testenv.AWSCall) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "\t%s\n", c)
	}
	return b.String()
}

// checkUnknown fails the test unless the recorder's unknown requests are
// one for each of the substrings, in order.
func checkUnknown(t *testing.T, rec *testenv.AWSRecorder, want ...string) {
	t.Helper()
	got := rec.Unknown()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = strings.Contains(got[i], want[i])
	}
	if !ok {
		t.Errorf("unknown requests %q, want one containing each of %q", got, want)
	}
}

func recorderHost(rec *testenv.AWSRecorder) string {
	return strings.TrimPrefix(rec.URL(), "http://")
}

// TestRecordAWSSQS makes the calls of a queue's life through a recorder in
// front of the SQS emulator, as two components with keys of their own.
func TestRecordAWSSQS(t *testing.T) {
	t.Parallel()
	emulator := testenv.StartSQS(t)
	rec := testenv.RecordAWS(t, emulator.Endpoint)
	ctx := t.Context()
	const dispatcher, scaler, queryClient = "AKIADISPATCHER", "AKIAKEDA", "AKIAQUERY"
	disp, keda := sqsClient(rec.URL(), dispatcher), sqsClient(rec.URL(), scaler)

	name := testenv.UniqueName(t, "rec-", 80)
	arn := "arn:aws:sqs:" + testenv.Region + ":" + testenv.Account + ":" + name
	var want []testenv.AWSCall
	expect := func(key, action string) {
		want = append(want, testenv.AWSCall{AccessKeyID: key, Action: action, Resource: arn})
	}

	created, err := disp.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("creating the queue through the recorder: %v", err)
	}
	queueURL := aws.ToString(created.QueueUrl)
	t.Cleanup(func() {
		_, _ = emulator.Client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)})
	})
	expect(dispatcher, "sqs:CreateQueue")
	// The emulator takes the port of a queue's URL from the Host header:
	// the recorder passed on the one the client signed, not its own.
	recURL, _ := url.Parse(rec.URL())
	if u, err := url.Parse(queueURL); err != nil || u.Port() != recURL.Port() {
		t.Errorf("queue URL %s does not name the recorder's port %s", queueURL, recURL.Port())
	}

	if _, err := keda.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("getting the queue URL: %v", err)
	}
	expect(scaler, "sqs:GetQueueUrl")

	listed, err := disp.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(name)})
	if err != nil || !slices.Contains(listed.QueueUrls, queueURL) {
		t.Fatalf("listing queues: %v, want %s in %v", err, queueURL, listed)
	}
	want = append(want, testenv.AWSCall{AccessKeyID: dispatcher, Action: "sqs:ListQueues",
		Resource: "arn:aws:sqs:" + testenv.Region + ":" + testenv.Account + ":*"})

	sent, err := disp.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: []sqstypes.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String(`{"job":"a"}`)},
		{Id: aws.String("b"), MessageBody: aws.String(`{"job":"b"}`)},
	}})
	if err != nil || len(sent.Failed) > 0 {
		t.Fatalf("sending a batch: %v %v", err, sent)
	}
	expect(dispatcher, "sqs:SendMessage")

	var msgs []sqstypes.Message
	for range 20 {
		out, err := disp.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
		})
		if err != nil {
			t.Fatalf("receiving: %v", err)
		}
		expect(dispatcher, "sqs:ReceiveMessage")
		if msgs = append(msgs, out.Messages...); len(msgs) >= 2 {
			break
		}
	}
	if len(msgs) != 2 {
		t.Fatalf("received %d messages, want 2", len(msgs))
	}

	if _, err := disp.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(queueURL), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 120,
	}); err != nil {
		t.Fatalf("changing a message's visibility: %v", err)
	}
	expect(dispatcher, "sqs:ChangeMessageVisibility")

	changed, err := disp.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(queueURL), Entries: []sqstypes.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 90},
		{Id: aws.String("1"), ReceiptHandle: msgs[1].ReceiptHandle, VisibilityTimeout: 90},
	}})
	if err != nil || len(changed.Failed) > 0 {
		t.Fatalf("changing visibility in a batch: %v %v", err, changed)
	}
	expect(dispatcher, "sqs:ChangeMessageVisibility")

	deleted, err := disp.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: []sqstypes.DeleteMessageBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: msgs[0].ReceiptHandle},
		{Id: aws.String("1"), ReceiptHandle: msgs[1].ReceiptHandle},
	}})
	if err != nil || len(deleted.Failed) > 0 {
		t.Fatalf("deleting a batch: %v %v", err, deleted)
	}
	expect(dispatcher, "sqs:DeleteMessage")

	attrs, err := keda.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessages"] != "0" {
		t.Fatalf("getting the queue's attributes: %v %v", err, attrs)
	}
	expect(scaler, "sqs:GetQueueAttributes")

	if _, err := disp.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), Attributes: map[string]string{"VisibilityTimeout": "45"},
	}); err != nil {
		t.Fatalf("setting the queue's attributes: %v", err)
	}
	expect(dispatcher, "sqs:SetQueueAttributes")

	if _, err := disp.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(queueURL), Tags: map[string]string{"team": "jobs"}}); err != nil {
		t.Fatalf("tagging the queue: %v", err)
	}
	expect(dispatcher, "sqs:TagQueue")
	tags, err := disp.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(queueURL)})
	if err != nil || tags.Tags["team"] != "jobs" {
		t.Fatalf("listing the queue's tags: %v %v", err, tags)
	}
	expect(dispatcher, "sqs:ListQueueTags")

	if _, err := disp.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
		t.Fatalf("purging the queue: %v", err)
	}
	expect(dispatcher, "sqs:PurgeQueue")

	// The query protocol: a form POST to the queue's URL, as older SDKs
	// send. The emulator answers it (with an error: it serves SQS in JSON
	// only), and the recorder maps it all the same.
	status := postQuery(t, rec.URL()+"/"+testenv.Account+"/"+name, queryClient,
		url.Values{"Action": {"GetQueueAttributes"}, "AttributeName.1": {"All"}, "Version": {"2012-11-05"}})
	if status == http.StatusBadGateway {
		t.Errorf("the query-protocol request did not reach the emulator")
	}
	expect(queryClient, "sqs:GetQueueAttributes")

	// An operation the recorder cannot map.
	if _, err := disp.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: aws.String("eyJ0YXNrSWQiOiIxIn0=")}); err == nil {
		t.Error("the emulator cancelled a message move task that does not exist")
	}

	if _, err := disp.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
		t.Fatalf("deleting the queue: %v", err)
	}
	expect(dispatcher, "sqs:DeleteQueue")

	checkCalls(t, rec, want)
	checkUnknown(t, rec, "POST / AmazonSQS.CancelMessageMoveTask: no IAM mapping")
}

// postQuery sends a query-protocol SQS request signed with SigV4 and
// returns the status of the answer.
func postQuery(t *testing.T, endpoint, keyID string, form url.Values) int {
	t.Helper()
	body := form.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: testenv.SecretKey}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "sqs", testenv.Region, time.Now()); err != nil {
		t.Fatalf("signing the query request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sending the query request: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestRecordAWSS3 makes a writer's and a reader's calls through a recorder
// in front of the S3 server.
func TestRecordAWSS3(t *testing.T) {
	t.Parallel()
	server := testenv.StartS3(t)
	rec := testenv.RecordAWS(t, server.Endpoint)
	ctx := t.Context()
	const writerKey, readerKey = "AKIAWRITER", "AKIAREADER"
	writer, reader := s3Client(rec.URL(), writerKey), s3Client(rec.URL(), readerKey)

	bucket := testenv.UniqueName(t, "jf-", 63)
	var want []testenv.AWSCall
	expect := func(key, action, key2 string) {
		resource := "arn:aws:s3:::" + bucket
		if key2 != "" {
			resource += "/" + key2
		}
		want = append(want, testenv.AWSCall{AccessKeyID: key, Action: action, Resource: resource})
	}

	if _, err := writer.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("creating the bucket through the recorder: %v", err)
	}
	t.Cleanup(func() { emptyBucket(server.Client, bucket) })
	expect(writerKey, "s3:CreateBucket", "")

	put := func(key, body string, ifNoneMatch *string) error {
		_, err := writer.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body), IfNoneMatch: ifNoneMatch,
		})
		expect(writerKey, "s3:PutObject", key)
		return err
	}
	if err := put("jobs/a.json", `{"job":"a"}`, nil); err != nil {
		t.Fatalf("putting an object: %v", err)
	}
	if err := put("jobs/b.json", `{"job":"b"}`, aws.String("*")); err != nil {
		t.Fatalf("putting an object that does not exist yet, with If-None-Match: %v", err)
	}
	// A conditional put that the server refuses is still a call made.
	var apiErr smithy.APIError
	if err := put("jobs/b.json", `{"job":"b2"}`, aws.String("*")); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("putting an object that exists, with If-None-Match: %v, want PreconditionFailed", err)
	}

	if got := getObject(t, reader, bucket, "jobs/a.json"); got != `{"job":"a"}` {
		t.Errorf("got %q through the recorder", got)
	}
	expect(readerKey, "s3:GetObject", "jobs/a.json")

	if _, err := reader.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("jobs/b.json")}); err != nil {
		t.Fatalf("heading an object: %v", err)
	}
	expect(readerKey, "s3:GetObject", "jobs/b.json")

	if _, err := reader.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("heading the bucket: %v", err)
	}
	expect(readerKey, "s3:ListBucket", "")

	list, err := reader.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("jobs/")})
	if err != nil {
		t.Fatalf("listing objects: %v", err)
	}
	var keys []string
	for _, o := range list.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if !slices.Equal(keys, []string{"jobs/a.json", "jobs/b.json"}) {
		t.Errorf("listed %q", keys)
	}
	want = append(want, withPrefix(testenv.AWSCall{AccessKeyID: readerKey, Action: "s3:ListBucket", Resource: "arn:aws:s3:::" + bucket}, "jobs/"))

	// A read of a missing object gets "not found" only with s3:ListBucket
	// on its key: the recorder records that call too.
	if _, err := reader.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("jobs/missing.json")}); err == nil {
		t.Error("reading a missing object succeeded")
	}
	expect(readerKey, "s3:GetObject", "jobs/missing.json")
	want = append(want, withPrefix(testenv.AWSCall{AccessKeyID: readerKey, Action: "s3:ListBucket", Resource: "arn:aws:s3:::" + bucket}, "jobs/missing.json"))

	if _, err := writer.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("archive/a.json"), CopySource: aws.String(bucket + "/jobs/a.json"),
	}); err != nil {
		t.Fatalf("copying an object: %v", err)
	}
	expect(writerKey, "s3:PutObject", "archive/a.json")
	expect(writerKey, "s3:GetObject", "jobs/a.json")

	presigned, err := s3.NewPresignClient(reader).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("archive/a.json")})
	if err != nil {
		t.Fatalf("presigning: %v", err)
	}
	if got := httpGet(t, presigned.URL); got != `{"job":"a"}` {
		t.Errorf("got %q with a presigned URL", got)
	}
	expect(readerKey, "s3:GetObject", "archive/a.json")

	// A streaming upload with aws-chunked framing, as SDKs send over
	// HTTPS: the server decodes it, so the object read back shows that the
	// body went through unchanged.
	big := bytes.Repeat([]byte("0123456789abcdef"), 20_000)
	putChunked(t, rec.URL(), writerKey, bucket, "big.bin", big, 64<<10)
	expect(writerKey, "s3:PutObject", "big.bin")
	if got := getObject(t, reader, bucket, "big.bin"); got != string(big) {
		t.Errorf("read back %d bytes of the chunked upload, want the %d sent", len(got), len(big))
	}
	expect(readerKey, "s3:GetObject", "big.bin")

	upload, err := writer.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("parts/m.bin")})
	if err != nil {
		t.Fatalf("creating a multipart upload: %v", err)
	}
	expect(writerKey, "s3:PutObject", "parts/m.bin")
	part, err := writer.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(bucket), Key: aws.String("parts/m.bin"), UploadId: upload.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("the only part"),
	})
	if err != nil {
		t.Fatalf("uploading a part: %v", err)
	}
	expect(writerKey, "s3:PutObject", "parts/m.bin")
	parts, err := writer.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String("parts/m.bin"), UploadId: upload.UploadId})
	if err != nil || len(parts.Parts) != 1 {
		t.Fatalf("listing parts: %v %v", err, parts)
	}
	expect(writerKey, "s3:ListMultipartUploadParts", "parts/m.bin")
	if _, err := writer.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String("parts/m.bin"), UploadId: upload.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}},
	}); err != nil {
		t.Fatalf("completing a multipart upload: %v", err)
	}
	expect(writerKey, "s3:PutObject", "parts/m.bin")
	aborted, err := writer.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("parts/aborted.bin")})
	if err != nil {
		t.Fatalf("creating a multipart upload: %v", err)
	}
	expect(writerKey, "s3:PutObject", "parts/aborted.bin")
	if _, err := writer.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String("parts/aborted.bin"), UploadId: aborted.UploadId,
	}); err != nil {
		t.Fatalf("aborting a multipart upload: %v", err)
	}
	expect(writerKey, "s3:AbortMultipartUpload", "parts/aborted.bin")

	// Requests the recorder cannot map: an operation it does not know
	// (whatever the server makes of it) and an unsigned request.
	_, _ = reader.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{
		Bucket: aws.String(bucket), Key: aws.String("jobs/a.json"), ObjectAttributes: []s3types.ObjectAttributes{s3types.ObjectAttributesEtag},
	})
	_ = httpGet(t, rec.URL()+"/"+bucket+"/jobs/a.json")

	toDelete := []string{"jobs/a.json", "jobs/b.json", "archive/a.json", "big.bin", "parts/m.bin"}
	var ids []s3types.ObjectIdentifier
	for _, k := range toDelete {
		ids = append(ids, s3types.ObjectIdentifier{Key: aws.String(k)})
		expect(writerKey, "s3:DeleteObject", k)
	}
	out, err := writer.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids}})
	if err != nil || len(out.Errors) > 0 || len(out.Deleted) != len(toDelete) {
		t.Fatalf("deleting objects: %v %v", err, out)
	}

	if _, err := writer.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("deleting the bucket: %v", err)
	}
	expect(writerKey, "s3:DeleteBucket", "")

	checkCalls(t, rec, want)
	checkUnknown(t, rec, "GET /"+bucket+"/jobs/a.json?attributes", "GET /"+bucket+"/jobs/a.json: unsigned request")
}

func getObject(t *testing.T, client *s3.Client, bucket, key string) string {
	t.Helper()
	out, err := client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("getting %s: %v", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return string(data)
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("getting %s: %v", u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", u, err)
	}
	return string(data)
}

// emptyBucket deletes a bucket the test left behind, and its objects.
func emptyBucket(client *s3.Client, bucket string) {
	ctx := context.Background()
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return // deleted by the test
	}
	for _, o := range list.Contents {
		_, _ = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
	}
	_, _ = client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
}

// putChunked uploads data with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body:
// chunks of chunkSize, each signed after the one before it, starting from
// the request's own signature.
func putChunked(t *testing.T, endpoint, keyID, bucket, key string, data []byte, chunkSize int) {
	t.Helper()
	const streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	now := time.Now().UTC()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, endpoint+"/"+bucket+"/"+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	for rest := data; len(rest) > 0; rest = rest[min(chunkSize, len(rest)):] {
		chunks = append(chunks, rest[:min(chunkSize, len(rest))])
	}
	chunks = append(chunks, nil)
	length := 0
	for _, c := range chunks {
		length += len(fmt.Sprintf("%x;chunk-signature=", len(c))) + 64 + 2 + len(c) + 2
	}
	req.ContentLength = int64(length)
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	req.Header.Set("X-Amz-Content-Sha256", streaming)
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: testenv.SecretKey}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := signer.SignHTTP(t.Context(), creds, req, streaming, "s3", testenv.Region, now); err != nil {
		t.Fatalf("signing the chunked upload: %v", err)
	}
	_, seed, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")

	date := now.Format("20060102")
	scope := date + "/" + testenv.Region + "/s3/aws4_request"
	signingKey := []byte("AWS4" + testenv.SecretKey)
	for _, part := range []string{date, testenv.Region, "s3", "aws4_request"} {
		signingKey = hmacSHA256(signingKey, part)
	}
	emptyHash := sha256.Sum256(nil)
	var body bytes.Buffer
	prev := seed
	for _, c := range chunks {
		chunkHash := sha256.Sum256(c)
		toSign := strings.Join([]string{"AWS4-HMAC-SHA256-PAYLOAD", now.Format("20060102T150405Z"), scope, prev,
			hex.EncodeToString(emptyHash[:]), hex.EncodeToString(chunkHash[:])}, "\n")
		prev = hex.EncodeToString(hmacSHA256(signingKey, toSign))
		fmt.Fprintf(&body, "%x;chunk-signature=%s\r\n", len(c), prev)
		body.Write(c)
		body.WriteString("\r\n")
	}
	if body.Len() != length {
		t.Fatalf("built a chunked body of %d bytes, want %d", body.Len(), length)
	}
	req.Body = io.NopCloser(&body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sending the chunked upload: %v", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chunked upload: %s: %s", resp.Status, answer)
	}
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// upstream is a server that answers 200 and keeps what it was sent, for
// checking the recorder's mapping of requests the test servers do not
// serve, and that it forwards them unchanged.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	requests []seen
}

type seen struct{ method, uri, host, body string }

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.requests = append(u.requests, seen{r.Method, r.RequestURI, r.Host, string(body)})
		u.mu.Unlock()
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) seen() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.requests)
}

// sigV4 is an Authorization header for the key and service. The recorder
// does not check signatures, so the signature itself is a dummy.
func sigV4(keyID, service string) string {
	return "AWS4-HMAC-SHA256 Credential=" + keyID + "/20260101/eu-west-1/" + service +
		"/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64)
}

// chunked frames payload as aws-chunked, in chunks of three bytes, signed
// (with dummy signatures) or not (with a trailing checksum).
func chunked(payload string, signed bool) string {
	var b strings.Builder
	ext := ""
	if signed {
		ext = ";chunk-signature=" + strings.Repeat("0", 64)
	}
	for rest := payload; rest != ""; rest = rest[min(3, len(rest)):] {
		c := rest[:min(3, len(rest))]
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", len(c), ext, c)
	}
	fmt.Fprintf(&b, "0%s\r\n", ext)
	if !signed {
		b.WriteString("x-amz-checksum-crc32:AAAAAA==\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// TestRecordAWSMapsRequests checks the mapping of each kind of request,
// and that the request reaches the upstream unchanged.
func TestRecordAWSMapsRequests(t *testing.T) {
	t.Parallel()
	const deleteXML = `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
		`<Object><Key>jobs/a.json</Key></Object><Object><Key>jobs/b.json</Key><VersionId>v2</VersionId></Object><Quiet>true</Quiet></Delete>`
	call := func(key, action, resource string) testenv.AWSCall {
		return testenv.AWSCall{AccessKeyID: key, Action: action, Resource: resource}
	}
	sqsJSON := func(op string) http.Header {
		return http.Header{"Authorization": {sigV4("AKIAQ", "sqs")}, "X-Amz-Target": {"AmazonSQS." + op},
			"Content-Type": {"application/x-amz-json-1.0"}}
	}
	sqsForm := http.Header{"Authorization": {sigV4("AKIAQ", "sqs")}, "Content-Type": {"application/x-www-form-urlencoded"}}
	s3Auth := func(extra ...string) http.Header {
		h := http.Header{"Authorization": {sigV4("AKIAS", "s3")}}
		for i := 0; i < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	const queue = "arn:aws:sqs:eu-west-1:123456789012:jobs"
	tests := []struct {
		name           string
		method, target string
		host           string // the Host header, when not the recorder's address
		header         http.Header
		body           string
		want           []testenv.AWSCall
		unknown        string
	}{
		{name: "sqs SendMessageBatch", method: "POST", target: "/", header: sqsJSON("SendMessageBatch"),
			body: `{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/jobs","Entries":[]}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:SendMessage", queue)}},
		{name: "sqs DeleteMessageBatch", method: "POST", target: "/", header: sqsJSON("DeleteMessageBatch"),
			body: `{"QueueUrl":"http://127.0.0.1:1/123456789012/jobs"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:DeleteMessage", queue)}},
		{name: "sqs ChangeMessageVisibilityBatch", method: "POST", target: "/", header: sqsJSON("ChangeMessageVisibilityBatch"),
			body: `{"QueueUrl":"http://127.0.0.1:1/123456789012/jobs"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:ChangeMessageVisibility", queue)}},
		{name: "sqs ListDeadLetterSourceQueues", method: "POST", target: "/", header: sqsJSON("ListDeadLetterSourceQueues"),
			body: `{"QueueUrl":"http://127.0.0.1:1/123456789012/jobs"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:ListDeadLetterSourceQueues", queue)}},
		{name: "sqs CreateQueue", method: "POST", target: "/", header: sqsJSON("CreateQueue"), body: `{"QueueName":"jobs"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:CreateQueue", "arn:aws:sqs:eu-west-1:"+testenv.Account+":jobs")}},
		{name: "sqs GetQueueUrl of another account", method: "POST", target: "/", header: sqsJSON("GetQueueUrl"),
			body: `{"QueueName":"jobs","QueueOwnerAWSAccountId":"123456789012"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:GetQueueUrl", queue)}},
		{name: "sqs ListQueues", method: "POST", target: "/", header: sqsJSON("ListQueues"), body: `{}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:ListQueues", "arn:aws:sqs:eu-west-1:"+testenv.Account+":*")}},
		{name: "sqs StartMessageMoveTask", method: "POST", target: "/", header: sqsJSON("StartMessageMoveTask"),
			body: `{"SourceArn":"` + queue + `-dlq"}`,
			want: []testenv.AWSCall{call("AKIAQ", "sqs:StartMessageMoveTask", queue+"-dlq")}},
		{name: "sqs query, queue from the path", method: "POST", target: "/123456789012/jobs", header: sqsForm,
			body: "Action=DeleteMessageBatch&DeleteMessageBatchRequestEntry.1.Id=a&Version=2012-11-05",
			want: []testenv.AWSCall{call("AKIAQ", "sqs:DeleteMessage", queue)}},
		{name: "sqs query, QueueUrl parameter", method: "POST", target: "/", header: sqsForm,
			body: "Action=PurgeQueue&QueueUrl=" + url.QueryEscape("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"),
			want: []testenv.AWSCall{call("AKIAQ", "sqs:PurgeQueue", queue)}},
		{name: "sqs query in the URL", method: "GET", target: "/123456789012/jobs?Action=ReceiveMessage&MaxNumberOfMessages=10",
			header: http.Header{"Authorization": {sigV4("AKIAQ", "sqs")}},
			want:   []testenv.AWSCall{call("AKIAQ", "sqs:ReceiveMessage", queue)}},
		{name: "sqs unknown operation", method: "POST", target: "/", header: sqsJSON("CancelMessageMoveTask"), body: `{"TaskHandle":"x"}`,
			unknown: `no IAM mapping for SQS operation "CancelMessageMoveTask"`},
		{name: "sqs bad queue URL", method: "POST", target: "/", header: sqsJSON("SendMessage"), body: `{"QueueUrl":"http://h/jobs"}`,
			unknown: "is not .../<account>/<name>"},
		{name: "sqs without an action", method: "POST", target: "/", header: sqsForm, body: "Version=2012-11-05",
			unknown: "neither an X-Amz-Target header nor an Action parameter"},
		{name: "other service's target", method: "POST", target: "/",
			header: http.Header{"Authorization": {sigV4("AKIAQ", "sqs")}, "X-Amz-Target": {"DynamoDB_20120810.GetItem"}}, body: `{}`,
			unknown: "is not an SQS operation"},

		{name: "s3 ListBuckets", method: "GET", target: "/", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:ListAllMyBuckets", "*")}},
		{name: "s3 ListObjectsV2", method: "GET", target: "/b?list-type=2&prefix=jobs%2F&continuation-token=x", header: s3Auth(),
			want: []testenv.AWSCall{withPrefix(call("AKIAS", "s3:ListBucket", "arn:aws:s3:::b"), "jobs/")}},
		{name: "s3 ListObjects", method: "GET", target: "/b/", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:ListBucket", "arn:aws:s3:::b")}},
		{name: "s3 ListObjectVersions", method: "GET", target: "/b?versions&prefix=jobs", header: s3Auth(),
			want: []testenv.AWSCall{withPrefix(call("AKIAS", "s3:ListBucketVersions", "arn:aws:s3:::b"), "jobs")}},
		{name: "s3 ListMultipartUploads", method: "GET", target: "/b?uploads", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:ListBucketMultipartUploads", "arn:aws:s3:::b")}},
		{name: "s3 HeadBucket", method: "HEAD", target: "/b", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:ListBucket", "arn:aws:s3:::b")}},
		{name: "s3 CreateBucket", method: "PUT", target: "/b", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:CreateBucket", "arn:aws:s3:::b")}},
		{name: "s3 DeleteBucketTagging", method: "DELETE", target: "/b?tagging", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:PutBucketTagging", "arn:aws:s3:::b")}},
		{name: "s3 GetObject", method: "GET", target: "/b/jobs/a%20b.json?x-id=GetObject&response-content-type=text%2Fplain", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:GetObject", "arn:aws:s3:::b/jobs/a b.json")}},
		{name: "s3 GetObject of a version", method: "GET", target: "/b/k?versionId=v1", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:GetObjectVersion", "arn:aws:s3:::b/k")}},
		{name: "s3 HeadObject", method: "HEAD", target: "/b/k", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:GetObject", "arn:aws:s3:::b/k")}},
		{name: "s3 PutObject with tags and an ACL", method: "PUT", target: "/b/k?x-id=PutObject", body: "data",
			header: s3Auth("X-Amz-Tagging", "team=jobs", "X-Amz-Acl", "private", "If-None-Match", "*"),
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k"), call("AKIAS", "s3:PutObjectTagging", "arn:aws:s3:::b/k"),
				call("AKIAS", "s3:PutObjectAcl", "arn:aws:s3:::b/k")}},
		{name: "s3 PutObject aws-chunked", method: "PUT", target: "/b/k", body: chunked("streamed data", true),
			header: s3Auth("Content-Encoding", "aws-chunked", "X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "X-Amz-Decoded-Content-Length", "13"),
			want:   []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k")}},
		{name: "s3 CopyObject of a version", method: "PUT", target: "/b/k", header: s3Auth("X-Amz-Copy-Source", "src/a%20b.json?versionId=v7"),
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k"), call("AKIAS", "s3:GetObjectVersion", "arn:aws:s3:::src/a b.json")}},
		{name: "s3 UploadPartCopy", method: "PUT", target: "/b/k?partNumber=2&uploadId=u1", header: s3Auth("X-Amz-Copy-Source", "/src/a.json"),
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k"), call("AKIAS", "s3:GetObject", "arn:aws:s3:::src/a.json")}},
		{name: "s3 CreateMultipartUpload", method: "POST", target: "/b/k?uploads", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k")}},
		{name: "s3 UploadPart", method: "PUT", target: "/b/k?partNumber=1&uploadId=u1", header: s3Auth(), body: "part",
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k")}},
		{name: "s3 CompleteMultipartUpload", method: "POST", target: "/b/k?uploadId=u1", header: s3Auth(), body: "<CompleteMultipartUpload/>",
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObject", "arn:aws:s3:::b/k")}},
		{name: "s3 ListParts", method: "GET", target: "/b/k?uploadId=u1&max-parts=10", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:ListMultipartUploadParts", "arn:aws:s3:::b/k")}},
		{name: "s3 AbortMultipartUpload", method: "DELETE", target: "/b/k?uploadId=u1", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:AbortMultipartUpload", "arn:aws:s3:::b/k")}},
		{name: "s3 PutObjectTagging", method: "PUT", target: "/b/k?tagging", header: s3Auth(), body: "<Tagging/>",
			want: []testenv.AWSCall{call("AKIAS", "s3:PutObjectTagging", "arn:aws:s3:::b/k")}},
		{name: "s3 GetObjectTagging", method: "GET", target: "/b/k?tagging", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:GetObjectTagging", "arn:aws:s3:::b/k")}},
		{name: "s3 DeleteObject of a version", method: "DELETE", target: "/b/k?versionId=v1", header: s3Auth(),
			want: []testenv.AWSCall{call("AKIAS", "s3:DeleteObjectVersion", "arn:aws:s3:::b/k")}},
		{name: "s3 DeleteObjects", method: "POST", target: "/b?delete", header: s3Auth("Content-Type", "application/xml"), body: deleteXML,
			want: []testenv.AWSCall{call("AKIAS", "s3:DeleteObject", "arn:aws:s3:::b/jobs/a.json"), call("AKIAS", "s3:DeleteObjectVersion", "arn:aws:s3:::b/jobs/b.json")}},
		{name: "s3 DeleteObjects aws-chunked, signed", method: "POST", target: "/b?delete", body: chunked(deleteXML, true),
			header: s3Auth("Content-Encoding", "aws-chunked", "X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
			want:   []testenv.AWSCall{call("AKIAS", "s3:DeleteObject", "arn:aws:s3:::b/jobs/a.json"), call("AKIAS", "s3:DeleteObjectVersion", "arn:aws:s3:::b/jobs/b.json")}},
		{name: "s3 DeleteObjects aws-chunked, unsigned with a trailer", method: "POST", target: "/b?delete", body: chunked(deleteXML, false),
			header: s3Auth("Content-Encoding", "aws-chunked", "X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "X-Amz-Trailer", "x-amz-checksum-crc32"),
			want:   []testenv.AWSCall{call("AKIAS", "s3:DeleteObject", "arn:aws:s3:::b/jobs/a.json"), call("AKIAS", "s3:DeleteObjectVersion", "arn:aws:s3:::b/jobs/b.json")}},
		{name: "s3 presigned GetObject", method: "GET",
			target: "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAP%2F20260101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
			want:   []testenv.AWSCall{call("AKIAP", "s3:GetObject", "arn:aws:s3:::b/k")}},
		{name: "s3 unmapped object subresource", method: "GET", target: "/b/k?attributes", header: s3Auth(),
			unknown: "GET /b/k?attributes: no IAM mapping for S3 object operation GET ?attributes"},
		{name: "s3 unmapped bucket subresource", method: "GET", target: "/b?website", header: s3Auth(),
			unknown: "no IAM mapping for S3 bucket operation GET ?website"},
		{name: "s3 unknown query parameter", method: "GET", target: "/b/k?frobnicate=1", header: s3Auth(),
			unknown: `unknown S3 query parameter "frobnicate"`},
		{name: "s3 two subresources", method: "PUT", target: "/b/k?acl&tagging", header: s3Auth(),
			unknown: "two S3 subresources, acl and tagging"},
		{name: "s3 PutObject with a versionId", method: "PUT", target: "/b/k?versionId=v1", header: s3Auth(),
			unknown: "with a versionId"},
		{name: "s3 copy from an access point", method: "PUT", target: "/b/k",
			header:  s3Auth("X-Amz-Copy-Source", "arn:aws:s3:us-west-2:123456789012:accesspoint/ap/object/k"),
			unknown: "is not bucket/key"},
		{name: "s3 DeleteObjects without keys", method: "POST", target: "/b?delete", header: s3Auth(), body: "<Delete></Delete>",
			unknown: "DeleteObjects without keys"},
		{name: "s3 DeleteObjects cut short", method: "POST", target: "/b?delete", body: chunked(deleteXML, true)[:40],
			header:  s3Auth("Content-Encoding", "aws-chunked"),
			unknown: "aws-chunked"},
		{name: "s3 virtual-hosted style", method: "GET", target: "/k", host: "b.localhost", header: s3Auth(),
			unknown: `host "b.localhost" may name a bucket`},
		{name: "unsigned", method: "GET", target: "/b/k", unknown: "GET /b/k: unsigned request"},
		{name: "SigV2", method: "GET", target: "/b/k", header: http.Header{"Authorization": {"AWS AKIAS:c2lnbmF0dXJl"}},
			unknown: `signed with "AWS", not SigV4`},
		{name: "SigV4a", method: "GET", target: "/b/k",
			header:  http.Header{"Authorization": {"AWS4-ECDSA-P256-SHA256 Credential=AKIAS/20260101/s3/aws4_request, SignedHeaders=host, Signature=00"}},
			unknown: `signed with "AWS4-ECDSA-P256-SHA256"`},
		{name: "malformed scope", method: "GET", target: "/b/k", header: http.Header{"Authorization": {"AWS4-HMAC-SHA256 Credential=AKIAS/20260101/s3, Signature=00"}},
			unknown: "is not AKID/date/region/service/aws4_request"},
		{name: "another service", method: "POST", target: "/", header: http.Header{"Authorization": {sigV4("AKIAQ", "sns")}}, body: "Action=Publish",
			unknown: `signed for service "sns"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t)
			rec := testenv.RecordAWS(t, up.URL)
			req, err := http.NewRequestWithContext(t.Context(), tt.method, rec.URL()+tt.target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			maps.Copy(req.Header, tt.header)
			host := recorderHost(rec)
			if tt.host != "" {
				req.Host, host = tt.host, tt.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("sending through the recorder: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %s, want the upstream's 200", resp.Status)
			}
			got := up.seen()
			if want := []seen{{tt.method, tt.target, host, tt.body}}; !slices.Equal(got, want) {
				t.Errorf("the upstream was sent %q, want %q", got, want)
			}
			checkCalls(t, rec, tt.want)
			if tt.unknown != "" {
				checkUnknown(t, rec, tt.unknown)
			} else {
				checkUnknown(t, rec)
			}
		})
	}
}

// TestRecordAWSStreamsUploads checks that an upload reaches the upstream
// while the client is still sending it: the recorder does not buffer it.
func TestRecordAWSStreamsUploads(t *testing.T) {
	t.Parallel()
	const half = 1 << 20
	firstHalf := make(chan struct{})
	var received atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.CopyN(io.Discard, r.Body, half); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		close(firstHalf)
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(half + n)
	}))
	t.Cleanup(up.Close)
	rec := testenv.RecordAWS(t, up.URL)

	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte{'x'}, half)
		if _, err := pw.Write(chunk); err != nil {
			writeErr <- err
			return
		}
		select {
		case <-firstHalf:
		case <-time.After(30 * time.Second):
			err := errors.New("the upstream did not get the first half of the body while the client held back the second")
			pw.CloseWithError(err)
			writeErr <- err
			return
		}
		_, err := pw.Write(chunk)
		writeErr <- errors.Join(err, pw.Close())
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, rec.URL()+"/b/big.bin", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sigV4("AKIAS", "s3"))
	resp, err := http.DefaultClient.Do(req)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("uploading through the recorder: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || received.Load() != 2*half {
		t.Errorf("upload: %s, the upstream received %d bytes, want 200 and %d", resp.Status, received.Load(), 2*half)
	}
	checkCalls(t, rec, []testenv.AWSCall{{AccessKeyID: "AKIAS", Action: "s3:PutObject", Resource: "arn:aws:s3:::b/big.bin"}})
}

// TestRecordAWSRecordsOnlyAnsweredCalls checks that a call the upstream
// never answered is not recorded as made.
func TestRecordAWSRecordsOnlyAnsweredCalls(t *testing.T) {
	t.Parallel()
	// An upstream that hangs up on every connection. (A closed server's
	// port could be reused by the recorder itself, which would then call
	// itself.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	rec := testenv.RecordAWS(t, "http://"+ln.Addr().String())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rec.URL()+"/b/k", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sigV4("AKIAS", "s3"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %s from a recorder whose upstream is down, want 502", resp.Status)
	}
	checkCalls(t, rec, nil)
	checkUnknown(t, rec)
}

// withPrefix is a call with the s3:prefix condition key.
func withPrefix(c testenv.AWSCall, prefix string) testenv.AWSCall {
	c.Context = map[string][]string{"s3:prefix": {prefix}}
	return c
}
