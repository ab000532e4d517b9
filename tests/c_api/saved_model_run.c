/* Load a SavedModel with the TensorFlow C API and run tensors through it, as tensorflow_model_server does.
 *
 *     saved_model_run EXPORT_DIR META_OUT [REQUEST RESPONSE]...
 *
 * TF_LoadSessionFromSavedModel (tags {"serve"}) is the C++ LoadSavedModel
 * that TF Serving's SavedModel bundle calls. The loaded MetaGraphDef (its
 * signatures) is written to META_OUT, serialized. Each REQUEST file names
 * the feeds and fetches by tensor name; the fetched tensors go to RESPONSE.
 * Files are native-endian binary (written and read by
 * tests/reliability/test_c_api_loader.py):
 *
 *   REQUEST:  u32 n_feeds, then per feed: u32 name_len, name, u32 dtype
 *             (TF_DataType), u32 ndims, i64 dims[ndims], the values
 *             (TF_STRING: per element u64 length + bytes; else raw bytes);
 *             u32 n_fetches, then per fetch: u32 name_len, name.
 *   RESPONSE: per fetch: u32 dtype, u32 ndims, i64 dims[ndims], the values
 *             (TF_STRING as above; else u64 byte count + raw bytes).
 *
 * Exit status 0 on success; 1 with a message on stderr otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "saved_model_run: %s: %s\n", what, detail);
  exit(1);
}

static void check(TF_Status *status, const char *what) {
  if (TF_GetCode(status) != TF_OK) fail(what, TF_Message(status));
}

static void read_exact(FILE *file, void *buffer, size_t size) {
  if (size && fread(buffer, 1, size, file) != size) fail("request", "truncated file");
}

static uint32_t read_u32(FILE *file) {
  uint32_t value;
  read_exact(file, &value, sizeof value);
  return value;
}

static uint64_t read_u64(FILE *file) {
  uint64_t value;
  read_exact(file, &value, sizeof value);
  return value;
}

static char *read_name(FILE *file) {
  uint32_t length = read_u32(file);
  char *name = calloc(length + 1, 1);
  read_exact(file, name, length);
  return name;
}

static void write_exact(FILE *file, const void *buffer, size_t size) {
  if (size && fwrite(buffer, 1, size, file) != size) fail("response", "write failed");
}

/* "op_name:index" -> the graph output it names. */
static TF_Output graph_output(TF_Graph *graph, const char *tensor_name) {
  char *name = strdup(tensor_name);
  char *colon = strrchr(name, ':');
  int index = 0;
  if (colon) {
    index = atoi(colon + 1);
    *colon = '\0';
  }
  TF_Operation *operation = TF_GraphOperationByName(graph, name);
  if (!operation) fail("no such tensor in the graph", tensor_name);
  free(name);
  TF_Output output = {operation, index};
  return output;
}

static TF_Tensor *read_tensor(FILE *file) {
  TF_DataType dtype = (TF_DataType)read_u32(file);
  uint32_t ndims = read_u32(file);
  int64_t dims[16];
  if (ndims > 16) fail("request", "more than 16 dimensions");
  int64_t count = 1;
  for (uint32_t d = 0; d < ndims; d++) {
    dims[d] = (int64_t)read_u64(file);
    count *= dims[d];
  }
  if (dtype == TF_STRING) {
    TF_Tensor *tensor = TF_AllocateTensor(TF_STRING, dims, (int)ndims, (size_t)count * sizeof(TF_TString));
    TF_TString *strings = (TF_TString *)TF_TensorData(tensor);
    for (int64_t i = 0; i < count; i++) {
      uint64_t length = read_u64(file);
      char *bytes = malloc(length ? length : 1);
      read_exact(file, bytes, length);
      TF_TString_Init(&strings[i]);
      TF_TString_Copy(&strings[i], bytes, length);
      free(bytes);
    }
    return tensor;
  }
  size_t size = (size_t)count * TF_DataTypeSize(dtype);
  TF_Tensor *tensor = TF_AllocateTensor(dtype, dims, (int)ndims, size);
  read_exact(file, TF_TensorData(tensor), size);
  return tensor;
}

static void write_tensor(FILE *file, const TF_Tensor *tensor) {
  uint32_t dtype = (uint32_t)TF_TensorType(tensor), ndims = (uint32_t)TF_NumDims(tensor);
  write_exact(file, &dtype, sizeof dtype);
  write_exact(file, &ndims, sizeof ndims);
  for (uint32_t d = 0; d < ndims; d++) {
    int64_t dim = TF_Dim(tensor, (int)d);
    write_exact(file, &dim, sizeof dim);
  }
  if (dtype == TF_STRING) {
    const TF_TString *strings = (const TF_TString *)TF_TensorData(tensor);
    int64_t count = TF_TensorElementCount(tensor);
    for (int64_t i = 0; i < count; i++) {
      uint64_t length = TF_TString_GetSize(&strings[i]);
      write_exact(file, &length, sizeof length);
      write_exact(file, TF_TString_GetDataPointer(&strings[i]), length);
    }
    return;
  }
  uint64_t size = TF_TensorByteSize(tensor);
  write_exact(file, &size, sizeof size);
  write_exact(file, TF_TensorData(tensor), size);
}

static void run_request(TF_Session *session, TF_Graph *graph, const char *request_path, const char *response_path) {
  FILE *request = fopen(request_path, "rb");
  if (!request) fail("cannot open", request_path);
  uint32_t n_feeds = read_u32(request);
  TF_Output *feeds = calloc(n_feeds ? n_feeds : 1, sizeof(TF_Output));
  TF_Tensor **values = calloc(n_feeds ? n_feeds : 1, sizeof(TF_Tensor *));
  for (uint32_t i = 0; i < n_feeds; i++) {
    char *name = read_name(request);
    feeds[i] = graph_output(graph, name);
    free(name);
    values[i] = read_tensor(request);
  }
  uint32_t n_fetches = read_u32(request);
  TF_Output *fetches = calloc(n_fetches ? n_fetches : 1, sizeof(TF_Output));
  TF_Tensor **results = calloc(n_fetches ? n_fetches : 1, sizeof(TF_Tensor *));
  for (uint32_t i = 0; i < n_fetches; i++) {
    char *name = read_name(request);
    fetches[i] = graph_output(graph, name);
    free(name);
  }
  fclose(request);

  TF_Status *status = TF_NewStatus();
  TF_SessionRun(session, NULL, feeds, values, (int)n_feeds, fetches, results, (int)n_fetches, NULL, 0, NULL, status);
  check(status, request_path);
  FILE *response = fopen(response_path, "wb");
  if (!response) fail("cannot write", response_path);
  for (uint32_t i = 0; i < n_fetches; i++) {
    write_tensor(response, results[i]);
    TF_DeleteTensor(results[i]);
  }
  if (fclose(response) != 0) fail("cannot write", response_path);
  for (uint32_t i = 0; i < n_feeds; i++) TF_DeleteTensor(values[i]);
  TF_DeleteStatus(status);
  free(feeds);
  free(values);
  free(fetches);
  free(results);
}

int main(int argc, char **argv) {
  if (argc < 3 || argc % 2 == 0) {
    fprintf(stderr, "usage: %s EXPORT_DIR META_OUT [REQUEST RESPONSE]...\n", argv[0]);
    return 1;
  }
  const char *tags[] = {"serve"};
  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  TF_Buffer *meta_graph = TF_NewBuffer();
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, argv[1], tags, 1, graph, meta_graph, status);
  check(status, argv[1]);

  FILE *meta = fopen(argv[2], "wb");
  if (!meta) fail("cannot write", argv[2]);
  write_exact(meta, meta_graph->data, meta_graph->length);
  if (fclose(meta) != 0) fail("cannot write", argv[2]);

  for (int i = 3; i + 1 < argc; i += 2) run_request(session, graph, argv[i], argv[i + 1]);

  TF_CloseSession(session, status);
  check(status, "closing the session");
  TF_DeleteSession(session, status);
  TF_DeleteBuffer(meta_graph);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
