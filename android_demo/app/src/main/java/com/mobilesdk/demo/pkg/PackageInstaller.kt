package com.mobilesdk.demo.pkg

import android.content.Context
import android.net.Uri
import androidx.documentfile.provider.DocumentFile
import com.mobilesdk.demo.ContractNames
import java.io.File
import java.io.IOException
import java.io.InputStream
import java.util.zip.ZipInputStream

class PackageInstallException(message: String) : IOException(message)

/**
 * Copies packages into app storage (`files/packages/NAME.mobilepkg/`), from the APK's assets or from a folder
 * or zip the user picks. Every install is built in a hidden staging folder and renamed into place when
 * complete, so an interrupted copy never leaves a half package behind. Checking the files themselves is the
 * engine's job when it opens the package.
 */
class PackageInstaller(private val context: Context) {
    val root: File = File(context.filesDir, "packages")

    init {
        // Staging folders left by a process killed mid-install.
        root.listFiles { f -> f.name.startsWith(".") }?.forEach { it.deleteRecursively() }
    }

    fun installed(): List<File> =
        root.listFiles { f -> f.isDirectory && f.name.endsWith(ContractNames.PACKAGE_SUFFIX) }
            ?.sortedBy { it.name }
            .orEmpty()

    /** Package folders bundled at the top of the APK's assets (see README.md). */
    fun bundled(): List<String> =
        context.assets.list("").orEmpty().filter { it.endsWith(ContractNames.PACKAGE_SUFFIX) }

    fun installFromAssets(name: String): File = install(name) { staging ->
        copyAsset(name, staging)
        staging
    }

    /** A folder picked with ACTION_OPEN_DOCUMENT_TREE. */
    fun installFromTree(tree: Uri): File {
        val dir = DocumentFile.fromTreeUri(context, tree)
            ?: throw PackageInstallException("cannot read the picked folder")
        return install(dir.name ?: "package") { staging ->
            copyDocumentTree(dir, staging)
            staging
        }
    }

    /** A .zip of a package folder (as `mobile-sdk export --zip` writes) picked with ACTION_OPEN_DOCUMENT. */
    fun installFromZip(zip: Uri): File {
        val name = DocumentFile.fromSingleUri(context, zip)?.name ?: "package"
        return install(name.removeSuffix(".zip")) { staging ->
            openStream(zip).use { extractZip(it, staging) }
            packageRootIn(staging, name)
        }
    }

    /** Builds the package in a staging folder with [fill] (which returns the folder holding the manifest), then renames it into place. */
    private fun install(displayName: String, fill: (File) -> File): File {
        val target = File(root, folderName(displayName))
        val staging = File(root, ".staging-${System.nanoTime()}")
        try {
            if (!staging.mkdirs()) throw PackageInstallException("cannot create $staging")
            val pkg = fill(staging)
            if (!File(pkg, ContractNames.MANIFEST_FILE).isFile) {
                throw PackageInstallException("$displayName: no ${ContractNames.MANIFEST_FILE} at its top, so it is not a package")
            }
            replace(target, pkg)
            return target
        } finally {
            staging.deleteRecursively()
        }
    }

    /** Swaps [src] in as [target]; an older copy is moved aside first (rename cannot replace a non-empty folder). */
    private fun replace(target: File, src: File) {
        val old = File(root, ".old-${System.nanoTime()}")
        if (target.exists() && !target.renameTo(old)) throw PackageInstallException("cannot move the old $target aside")
        if (!src.renameTo(target)) {
            old.renameTo(target)
            throw PackageInstallException("cannot move the new package to $target")
        }
        old.deleteRecursively()
    }

    private fun copyAsset(path: String, dest: File) {
        val children = context.assets.list(path).orEmpty()
        if (children.isEmpty()) {
            context.assets.open(path).use { input -> dest.outputStream().use { input.copyTo(it) } }
            return
        }
        dest.mkdirs()
        for (child in children) copyAsset("$path/$child", File(dest, child))
    }

    private fun copyDocumentTree(dir: DocumentFile, dest: File) {
        dest.mkdirs()
        for (doc in dir.listFiles()) {
            val name = safeName(doc.name ?: continue)
            if (doc.isDirectory) {
                copyDocumentTree(doc, File(dest, name))
            } else {
                openStream(doc.uri).use { input -> File(dest, name).outputStream().use { input.copyTo(it) } }
            }
        }
    }

    private fun extractZip(input: InputStream, dest: File) {
        ZipInputStream(input.buffered()).use { zip ->
            while (true) {
                val entry = zip.nextEntry ?: break
                val parts = entry.name.split('/').filter { it.isNotEmpty() }
                // Zip-slip: an entry may only name a path inside the package folder.
                if (entry.name.startsWith("/") || '\\' in entry.name || parts.any { it == ".." }) {
                    throw PackageInstallException("zip entry '${entry.name}' escapes the package folder; refusing to install")
                }
                val file = File(dest, parts.joinToString(File.separator))
                if (entry.isDirectory) {
                    file.mkdirs()
                } else {
                    file.parentFile?.mkdirs()
                    file.outputStream().use { zip.copyTo(it) }
                }
            }
        }
    }

    /** The manifest sits at the top of the zip or inside its one folder (both are written by the SDK's tools). */
    private fun packageRootIn(staging: File, zipName: String): File {
        if (File(staging, ContractNames.MANIFEST_FILE).isFile) return staging
        val dirs = staging.listFiles { f -> f.isDirectory }.orEmpty()
        return dirs.singleOrNull()?.takeIf { File(it, ContractNames.MANIFEST_FILE).isFile }
            ?: throw PackageInstallException("$zipName: no ${ContractNames.MANIFEST_FILE} at the top of the zip or in its one folder")
    }

    private fun openStream(uri: Uri): InputStream =
        context.contentResolver.openInputStream(uri) ?: throw PackageInstallException("cannot open $uri")

    private fun safeName(name: String): String {
        if (name == "." || name == ".." || '/' in name) throw PackageInstallException("file name '$name' is not allowed in a package")
        return name
    }

    /** NAME.mobilepkg for a picked name, keeping it a plain file name. */
    private fun folderName(displayName: String): String {
        val base = displayName.substringAfterLast('/').removeSuffix(ContractNames.PACKAGE_SUFFIX)
            .replace(Regex("[^A-Za-z0-9._-]"), "_").trimStart('.')
        return (base.ifEmpty { "package" }) + ContractNames.PACKAGE_SUFFIX
    }
}
