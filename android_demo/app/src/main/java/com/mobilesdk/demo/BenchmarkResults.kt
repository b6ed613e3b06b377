package com.mobilesdk.demo

import org.json.JSONObject

/** The engine's pipeline-benchmark JSON (mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json). */
object BenchmarkResults {
    /** A one-line summary of the metrics; throws when [json] is not pipeline-benchmark output. */
    fun summarize(json: String): String {
        val results = JSONObject(json)
        val format = results.optString("format")
        check(format == ContractNames.PIPELINE_BENCHMARK_FORMAT) {
            "the engine returned format '$format', not ${ContractNames.PIPELINE_BENCHMARK_FORMAT}"
        }
        val metrics = results.optJSONObject("metrics")
        return ContractNames.METRICS.joinToString(", ") { "$it=${metrics?.opt(it)}" }
    }
}
