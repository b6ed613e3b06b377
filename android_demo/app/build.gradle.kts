import java.util.Properties

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

// What the engine's CMake needs from this machine (README.md, step 2), set in local.properties or with
// -P: `executorch.dir`, the NDK build of ExecuTorch (a find_package prefix), and `nlohmann.include`, the
// folder holding nlohmann/json.hpp (unless nlohmann_json is an installed CMake package on that prefix).
val localProperties = Properties().apply {
    rootProject.file("local.properties").takeIf { it.isFile }?.inputStream()?.use { load(it) }
}
fun machineProperty(name: String): String? = providers.gradleProperty(name).orNull ?: localProperties.getProperty(name)
val executorchDir: String? = machineProperty("executorch.dir")
val nlohmannInclude: String? = machineProperty("nlohmann.include")

android {
    namespace = "com.mobilesdk.demo"
    compileSdk = 35
    // r28c, the NDK ExecuTorch's CI builds with; the ExecuTorch install must come from the same NDK.
    ndkVersion = "28.2.13676358"

    defaultConfig {
        applicationId = "com.mobilesdk.demo"
        minSdk = 28
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"

        ndk {
            // ExecuTorch's XNNPACK kernels are built for arm64 phones only here.
            abiFilters += "arm64-v8a"
        }
        externalNativeBuild {
            cmake {
                executorchDir?.let { arguments += "-DCMAKE_PREFIX_PATH=$it" }
                nlohmannInclude?.let { arguments += "-DMVD_NLOHMANN_INCLUDE=$it" }
            }
        }
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            // Benchmarks need this build (debug compiles the engine without optimisation); the debug
            // key lets `installRelease` work without a keystore.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }

    buildFeatures {
        compose = true
    }

    androidResources {
        // Programs are read once at install; storing them uncompressed keeps the APK copy fast.
        noCompress += listOf("pte", "bin")
    }
}

dependencies {
    implementation(libs.androidx.core.ktx)
    implementation(libs.kotlinx.coroutines.android)
    implementation(libs.androidx.lifecycle.runtime.ktx)
    implementation(libs.androidx.lifecycle.viewmodel.ktx)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.documentfile)
    implementation(platform(libs.androidx.compose.bom))
    implementation(libs.androidx.ui)
    implementation(libs.androidx.material3)
}
