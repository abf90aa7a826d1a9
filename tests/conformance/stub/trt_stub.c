/*
 * Stand-in for the TensorRT native libraries (libnvinfer, libnvinfer_plugin, libnvonnxparser, libnvparsers),
 * just enough for the real Python bindings to load on a machine without TensorRT or a GPU.
 *
 * It defines the symbols the bindings module resolves at load time. Every factory returns NULL, so
 * trt.Builder(logger) and trt.Runtime(logger) fail with "factory function returned nullptr": nothing can be
 * built or run, but every class, enum, signature and value type (Weights, Dims) of the bindings is real.
 * The test session compiles this file once and installs the result under each soname the bindings link.
 */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version)
{ (void)engine; (void)logger; (void)version; return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version)
{ (void)network; (void)logger; (void)version; return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version)
{ (void)refitter; (void)logger; (void)version; return NULL; }
void *getBuilderPluginRegistry(int capability) { (void)capability; return NULL; }
void *getPluginRegistry(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { (void)logger; (void)name_space; return 0; }

/* TensorRT 8.6 only: C++ entry points of the UFF and Caffe parsers (libnvparsers.so.8), by mangled name.
 * nvuffparser::createUffParser(), nvuffparser::FieldMap::FieldMap(const char*, const void*, FieldType, int),
 * nvcaffeparser1::createCaffeParser(), nvcaffeparser1::shutdownProtobufLibrary(). */
void *_ZN11nvuffparser15createUffParserEv(void) { return NULL; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *name, const void *data, int type,
                                                        int length)
{ (void)self; (void)name; (void)data; (void)type; (void)length; }
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return NULL; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
