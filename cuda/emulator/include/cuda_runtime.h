// Emulator build only: the CUDA runtime API of cuda/emulator/cuda_emu.h in place of the toolkit's.
#pragma once
#include "../cuda_emu.h"
