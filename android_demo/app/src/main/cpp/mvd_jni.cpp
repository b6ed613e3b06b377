// JNI side of com.mobilesdk.demo.engine.NativeEngine (Kotlin object, @JvmStatic externals) over the
// engine's C API. Failures throw com.mobilesdk.demo.engine.EngineException with the engine's
// one-line message; nothing here aborts the process.
//
// Strings cross as standard UTF-8 through String.getBytes / new String(bytes, "UTF-8"): JNI's own
// *StringUTF* functions use modified UTF-8, which would tokenize characters outside the BMP
// differently from Python and reject engine messages holding arbitrary bytes.
#include <jni.h>

#include <string>

#include "mvd/engine_c.h"

namespace {

constexpr const char* kEngineException = "com/mobilesdk/demo/engine/EngineException";

jstring to_jstring(JNIEnv* env, const std::string& s) {
  jbyteArray bytes = env->NewByteArray(jsize(s.size()));
  if (bytes == nullptr) return nullptr;
  env->SetByteArrayRegion(bytes, 0, jsize(s.size()), reinterpret_cast<const jbyte*>(s.data()));
  jclass string_class = env->FindClass("java/lang/String");
  if (string_class == nullptr) return nullptr;
  jmethodID ctor = env->GetMethodID(string_class, "<init>", "([BLjava/lang/String;)V");
  jstring charset = env->NewStringUTF("UTF-8");
  if (ctor == nullptr || charset == nullptr) return nullptr;
  auto out = static_cast<jstring>(env->NewObject(string_class, ctor, bytes, charset));
  env->DeleteLocalRef(bytes);
  env->DeleteLocalRef(charset);
  env->DeleteLocalRef(string_class);
  return out;
}

// False (with a Java exception pending) when the string cannot be read.
bool from_jstring(JNIEnv* env, jstring s, std::string* out) {
  if (s == nullptr) {
    env->ThrowNew(env->FindClass("java/lang/NullPointerException"), "string argument is null");
    return false;
  }
  jclass string_class = env->GetObjectClass(s);
  jmethodID get_bytes = env->GetMethodID(string_class, "getBytes", "(Ljava/lang/String;)[B");
  jstring charset = env->NewStringUTF("UTF-8");
  if (get_bytes == nullptr || charset == nullptr) return false;
  auto bytes = static_cast<jbyteArray>(env->CallObjectMethod(s, get_bytes, charset));
  env->DeleteLocalRef(charset);
  env->DeleteLocalRef(string_class);
  if (env->ExceptionCheck() || bytes == nullptr) return false;
  const jsize n = env->GetArrayLength(bytes);
  out->resize(size_t(n));
  env->GetByteArrayRegion(bytes, 0, n, reinterpret_cast<jbyte*>(&(*out)[0]));
  env->DeleteLocalRef(bytes);
  return true;
}

void throw_engine(JNIEnv* env, const std::string& message) {
  if (env->ExceptionCheck()) return;  // keep the first exception
  jclass cls = env->FindClass(kEngineException);
  if (cls == nullptr) return;  // NoClassDefFoundError is pending
  jmethodID ctor = env->GetMethodID(cls, "<init>", "(Ljava/lang/String;)V");
  jstring text = to_jstring(env, message);
  if (ctor == nullptr || text == nullptr) return;
  auto ex = static_cast<jthrowable>(env->NewObject(cls, ctor, text));
  if (ex != nullptr) env->Throw(ex);
}

mvd_engine* engine_of(JNIEnv* env, jlong handle) {
  auto* e = reinterpret_cast<mvd_engine*>(handle);
  if (e == nullptr) throw_engine(env, "the engine handle is closed (0)");
  return e;
}

jstring owned_json(JNIEnv* env, char* json, const char* what) {
  if (json == nullptr) {
    throw_engine(env, std::string(what) + ": out of memory");
    return nullptr;
  }
  jstring out = to_jstring(env, json);
  mvd_free(json);
  return out;
}

// The listener, called on the generating thread (the thread that called generate).
struct Listener {
  JNIEnv* env;
  jobject listener;
  jmethodID on_step;
};

int on_progress(void* user, int step, int total) {
  auto* l = static_cast<Listener*>(user);
  const jboolean go_on = l->env->CallBooleanMethod(l->listener, l->on_step, jint(step), jint(total));
  return l->env->ExceptionCheck() ? 0 : go_on;  // a throwing listener cancels; its exception propagates
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_open(JNIEnv* env, jclass, jstring package_dir,
                                                                         jboolean verify, jint threads, jint frames,
                                                                         jint height, jint width) {
  std::string dir;
  if (!from_jstring(env, package_dir, &dir)) return 0;
  char* error = nullptr;
  mvd_engine* e = mvd_open(dir.c_str(), verify ? 1 : 0, threads, frames, height, width, &error);
  if (e == nullptr) {
    throw_engine(env, error != nullptr ? error : "cannot open the package (out of memory)");
    mvd_free(error);
    return 0;
  }
  return reinterpret_cast<jlong>(e);
}

JNIEXPORT void JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_close(JNIEnv*, jclass, jlong handle) {
  mvd_close(reinterpret_cast<mvd_engine*>(handle));
}

JNIEXPORT jstring JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_videoInfo(JNIEnv* env, jclass, jlong handle) {
  mvd_engine* e = engine_of(env, handle);
  return e == nullptr ? nullptr : owned_json(env, mvd_video_info(e), "videoInfo");
}

JNIEXPORT jbyteArray JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_generate(JNIEnv* env, jclass, jlong handle,
                                                                                  jstring prompt, jlong seed, jobject listener) {
  mvd_engine* e = engine_of(env, handle);
  std::string text;
  if (e == nullptr || !from_jstring(env, prompt, &text)) return nullptr;
  Listener l{env, listener, nullptr};
  if (listener != nullptr) {
    jclass cls = env->GetObjectClass(listener);
    l.on_step = env->GetMethodID(cls, "onStep", "(II)Z");
    env->DeleteLocalRef(cls);
    if (l.on_step == nullptr) return nullptr;  // NoSuchMethodError is pending
  }
  uint8_t* rgb = nullptr;
  size_t size = 0;
  // The seed's uint64 bits arrive in a signed Long.
  const mvd_status status = mvd_generate(e, text.c_str(), static_cast<uint64_t>(seed), listener ? on_progress : nullptr,
                                         &l, &rgb, &size);
  if (status != MVD_OK) {
    throw_engine(env, mvd_last_error(e));
    return nullptr;
  }
  jbyteArray out = env->NewByteArray(jsize(size));
  if (out != nullptr) env->SetByteArrayRegion(out, 0, jsize(size), reinterpret_cast<const jbyte*>(rgb));
  mvd_free(rgb);
  return out;  // null with OutOfMemoryError pending if the array could not be made
}

JNIEXPORT void JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_cancel(JNIEnv*, jclass, jlong handle) {
  mvd_cancel(reinterpret_cast<mvd_engine*>(handle));
}

JNIEXPORT jstring JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_lastTimings(JNIEnv* env, jclass, jlong handle) {
  mvd_engine* e = engine_of(env, handle);
  return e == nullptr ? nullptr : owned_json(env, mvd_last_timings(e), "lastTimings");
}

JNIEXPORT jstring JNICALL Java_com_mobilesdk_demo_engine_NativeEngine_benchmark(JNIEnv* env, jclass, jlong handle, jstring prompt,
                                                                                jlong seed, jint warmup, jint runs) {
  mvd_engine* e = engine_of(env, handle);
  std::string text;
  if (e == nullptr || !from_jstring(env, prompt, &text)) return nullptr;
  char* json = nullptr;
  if (mvd_benchmark(e, text.c_str(), static_cast<uint64_t>(seed), warmup, runs, &json) != MVD_OK) {
    throw_engine(env, mvd_last_error(e));
    return nullptr;
  }
  return owned_json(env, json, "benchmark");
}

}  // extern "C"
