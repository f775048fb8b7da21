<#
.SYNOPSIS
    Shared by the PowerShell runners: activate the repository's venv and open a dated log file.
.DESCRIPTION
    Dot-source it, then call Initialize-Runner. It returns the fertrain executable to call and
    sets $script:LogFile.
#>

function Initialize-Runner {
    param(
        [Parameter(Mandatory = $true)][string]$Name,
        [Parameter(Mandatory = $true)][string]$LogDir
    )
    $repo = Split-Path -Parent $PSScriptRoot
    $activate = Join-Path $repo '.venv\Scripts\Activate.ps1'
    if (Test-Path $activate) {
        . $activate
    }
    $exe = Join-Path $repo '.venv\Scripts\fertrain.exe'
    if (-not (Test-Path $exe)) {
        $found = Get-Command fertrain -ErrorAction SilentlyContinue
        if (-not $found) {
            throw "fertrain not found: create $repo\.venv (see README, Set-up) or activate the venv that has it"
        }
        $exe = $found.Source
    }
    New-Item -ItemType Directory -Force -Path $LogDir | Out-Null
    $script:LogFile = Join-Path $LogDir ('{0}_{1}.log' -f $Name, (Get-Date -Format 'yyyyMMdd_HHmmss'))
    Write-Host "logging to $script:LogFile"
    return $exe
}
