package com.mobilesdk.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.viewModels
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import com.mobilesdk.demo.ui.DemoScreen
import com.mobilesdk.demo.ui.DemoViewModel

class MainActivity : ComponentActivity() {
    // The engine lives in the ViewModel, so a rotation does not reload the package.
    private val vm: DemoViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent {
            MaterialTheme {
                Surface {
                    DemoScreen(vm)
                }
            }
        }
    }
}
