package com.mobilesdk.demo.io

import java.io.File
import java.io.IOException

/**
 * Writes this file through [write] into a temporary file beside it, then renames it into place, so a reader
 * (a player, `adb pull`) never sees a partial file; on failure the temporary file is removed.
 */
fun File.replaceAtomically(write: (File) -> Unit) {
    val parent = absoluteFile.parentFile ?: throw IOException("$this has no parent folder")
    if (!parent.isDirectory && !parent.mkdirs()) throw IOException("cannot create $parent")
    val tmp = File(parent, ".$name.tmp")
    try {
        write(tmp)
        if (!tmp.renameTo(this)) throw IOException("cannot rename $tmp to $this")
    } finally {
        tmp.delete()
    }
}
